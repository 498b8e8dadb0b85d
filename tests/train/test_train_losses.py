"""Training's pure functions against numbers computed by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from steering.train.losses import (
    IGNORE,
    bradley_terry_loss,
    dpo_loss,
    first_stop_logprob,
    group_advantages,
    kl_k1,
    kl_k3,
    picked_logprobs,
    plackett_luce_loss,
    token_logprobs,
    unlikelihood,
    warmup_cosine,
)


def test_warmup_then_cosine():
    values = [warmup_cosine(s, warmup=4, total=12) for s in range(13)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert values[4] == pytest.approx(1.0)
    assert values[8] == pytest.approx(0.5)  # half-way through the decay: (1 + cos(π/2)) / 2
    assert values[12] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(values[4:]))


def test_token_logprobs_shift_and_ignore():
    # Vocabulary of 3; logits chosen so that log-probs are easy: row t predicts label t+1.
    logits = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[IGNORE, 0, 2]])
    picked = token_logprobs(logits, labels)
    assert picked[0, 0] == pytest.approx(math.log(1 / 3))  # logits[0] → label 0
    assert picked[0, 1] == pytest.approx(math.log(1 / 4))  # logits[1] = (log 2, 0, 0) → label 2: 1/4
    assert float(picked.sum()) == pytest.approx(math.log(1 / 3) + math.log(1 / 4))  # the span's log-prob
    assert token_logprobs(logits, torch.tensor([[0, IGNORE, IGNORE]])).abs().sum() == 0


def test_picked_logprobs_matches_log_softmax_gather_and_its_gradient():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 11, dtype=torch.float64, generator=generator, requires_grad=True)
    index = torch.randint(0, 11, (3, 4), generator=generator)
    assert torch.autograd.gradcheck(picked_logprobs, (logits, index))
    weights = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    (picked_logprobs(logits, index) * weights).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    reference = logits.log_softmax(-1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    (reference * weights).sum().backward()
    assert torch.allclose(ours, logits.grad) and torch.allclose(picked_logprobs(logits, index), reference)
    # bfloat16 logits: float32 books, the gradient handed back in the logits' own dtype
    half = logits.detach().to(torch.bfloat16).requires_grad_()
    picked = picked_logprobs(half, index)
    assert picked.dtype == torch.float32
    assert torch.allclose(picked, half.float().log_softmax(-1).gather(-1, index.unsqueeze(-1)).squeeze(-1))
    picked.sum().backward()
    assert half.grad is not None and half.grad.dtype == torch.bfloat16


def test_bradley_terry_and_plackett_luce():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    expected = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
    assert float(loss) == pytest.approx(expected)
    # P(a > b > c) = e^a/(e^a+e^b+e^c) · e^b/(e^b+e^c)
    a, b, c = 1.0, 0.5, -1.0
    p = math.exp(a) / (math.exp(a) + math.exp(b) + math.exp(c)) * math.exp(b) / (math.exp(b) + math.exp(c))
    assert float(plackett_luce_loss(torch.tensor([a, b, c]))) == pytest.approx(-math.log(p))
    # With two items Plackett–Luce is Bradley–Terry.
    assert float(plackett_luce_loss(torch.tensor([2.0, 0.0]))) == pytest.approx(math.log(1 + math.exp(-2.0)))


def test_dpo_and_ipo_by_hand():
    pc, pr, rc, rr = torch.tensor([-3.0]), torch.tensor([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.5])
    # h = (−3 + 4) − (−5 + 4.5) = 1.5
    loss, margin = dpo_loss(pc, pr, rc, rr, beta=0.1)
    assert float(margin) == pytest.approx(1.5)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-0.15)))
    ipo, _ = dpo_loss(pc, pr, rc, rr, beta=0.25, kind="ipo")
    assert float(ipo) == pytest.approx((1.5 - 2.0) ** 2)
    with pytest.raises(ValueError):
        dpo_loss(pc, pr, rc, rr, beta=0.1, kind="kto")


def test_soft_labels_by_hand():
    """−[p·log σ(z) + (1 − p)·log σ(−z)] on numbers worked out by hand; p = 1 is the hard loss, exactly."""
    chosen, rejected = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    p = torch.tensor([0.75, 0.5, 0.9])

    def log_sigmoid(z: float) -> float:
        return -math.log(1 + math.exp(-z))

    # Δ = 2, 0, −2: row losses −[.75·logσ(2) + .25·logσ(−2)], −logσ(0) = log 2, −[.9·logσ(−2) + .1·logσ(2)].
    by_hand = [
        -(0.75 * log_sigmoid(2.0) + 0.25 * log_sigmoid(-2.0)),
        math.log(2.0),
        -(0.9 * log_sigmoid(-2.0) + 0.1 * log_sigmoid(2.0)),
    ]
    assert by_hand[0] == pytest.approx(0.626928, abs=1e-6)  # 0.75·0.126928 + 0.25·2.126928
    assert float(bradley_terry_loss(chosen, rejected, p)) == pytest.approx(sum(by_hand) / 3)
    hard = bradley_terry_loss(chosen, rejected)
    assert torch.equal(bradley_terry_loss(chosen, rejected, torch.ones(3)), hard)
    # The soft loss is least where σ(Δ) = p: its gradient in Δ is σ(Δ) − p.
    delta = torch.tensor([math.log(3.0)], requires_grad=True)  # σ(log 3) = 0.75
    bradley_terry_loss(delta, torch.zeros(1), torch.tensor([0.75])).backward()
    assert delta.grad is not None and float(delta.grad) == pytest.approx(0.0, abs=1e-7)

    pc, pr, rc, rr = torch.tensor([-3.0]), torch.tensor([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.5])
    # h = 1.5, β = 0.1: −[0.8·logσ(0.15) + 0.2·logσ(−0.15)]; IPO with β = 0.25: (1.5 − (2·0.8 − 1)/0.5)².
    soft, margin = dpo_loss(pc, pr, rc, rr, beta=0.1, p_chosen=torch.tensor([0.8]))
    assert float(margin) == pytest.approx(1.5)
    assert float(soft) == pytest.approx(-(0.8 * log_sigmoid(0.15) + 0.2 * log_sigmoid(-0.15)))
    ipo, _ = dpo_loss(pc, pr, rc, rr, beta=0.25, kind="ipo", p_chosen=torch.tensor([0.8]))
    assert float(ipo) == pytest.approx((1.5 - 1.2) ** 2)
    for kind in ("dpo", "ipo"):
        hard_loss, _ = dpo_loss(pc, pr, rc, rr, beta=0.25, kind=kind)
        one, _ = dpo_loss(pc, pr, rc, rr, beta=0.25, kind=kind, p_chosen=torch.ones(1))
        assert torch.equal(one, hard_loss)
    # p = ½ says "no preference": at h = 0 (policy = reference) the loss is log 2, its least value.
    half, _ = dpo_loss(pc, pc, rc, rc, beta=0.1, p_chosen=torch.tensor([0.5]))
    assert float(half) == pytest.approx(math.log(2.0))


def test_group_advantages_and_kl_estimators():
    rewards = torch.tensor([[1.0, 2.0, 6.0]])
    assert group_advantages(rewards).tolist() == [[1 - 4.0, 2 - 3.5, 6 - 1.5]]
    normalised = group_advantages(rewards, normalise=True)
    assert float(normalised[0, 2]) == pytest.approx(4.5 / float(rewards.std()), rel=1e-5)
    with pytest.raises(ValueError):
        group_advantages(torch.tensor([[1.0]]))
    logq, logp = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert kl_k1(logq, logp).tolist() == pytest.approx([0.5, -1.0])
    r = torch.exp(logp - logq)
    assert kl_k3(logq, logp).tolist() == pytest.approx(((r - 1) - torch.log(r)).tolist())
    assert bool((kl_k3(logq, logp) >= 0).all())


def test_head_only_where_labels_follow_equals_the_full_logits(tiny):
    from steering.train.batching import Encoded, batch_rows, labelled_logprobs

    rows = [
        Encoded([2, 10, 11, 12, 13, 14], [IGNORE, IGNORE, IGNORE, 12, 13, 14]),
        Encoded([2, 20, 21, 22], [IGNORE, IGNORE, 21, 22]),
    ]
    batch = batch_rows(rows, tiny.pad_token_id)
    full = token_logprobs(
        tiny.module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
        batch["labels"],
    )
    kept = labelled_logprobs(tiny, batch)
    assert kept.shape[1] < full.shape[1]  # the prompt-only positions were skipped
    assert torch.allclose(kept.sum(-1), full.sum(-1), atol=1e-5)
    assert torch.count_nonzero(kept) == torch.count_nonzero(full) == 5


def test_first_stop_logprob_and_unlikelihood_by_hand():
    # Two rows, logits kept at positions 1..2 only; row 0's completion starts at position 1, row 1's
    # at position 2 (its first kept position is prompt). Vocabulary of 4; the stop ids are 0 and 3.
    labels = torch.tensor([[IGNORE, IGNORE, 2, 0], [IGNORE, IGNORE, IGNORE, 3]])
    positions = torch.tensor([1, 2])
    logits = torch.log(torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]],
                                     [[0.25, 0.25, 0.25, 0.25], [0.5, 0.2, 0.2, 0.1]]]))  # fmt: skip
    log_stop, counted = first_stop_logprob(logits, labels, positions, [0, 3])
    assert torch.allclose(log_stop.exp(), torch.tensor([0.1 + 0.4, 0.5 + 0.1]))
    assert counted.tolist() == [True, False]  # row 1's completion is empty: its first label is a stop
    p = torch.tensor([0.0, 0.5, 0.9])
    assert torch.allclose(unlikelihood(torch.log(p)), -torch.log(1 - p))
    assert torch.isfinite(unlikelihood(torch.tensor([0.0]))).all()  # p = 1: large, not inf
