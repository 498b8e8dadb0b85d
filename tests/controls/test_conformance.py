"""Every control exported by `steering.controls`, held to the control contract on the tiny model.

A control class exported from `steering.controls` must have an entry in `FACTORIES` (the suite fails
until it has one); each entry builds the control for `tiny-random`, and each case runs the checks
that apply to its kind:

- books: log p_base of every token is the plain model's on the raw prompt (what enumeration and
  teacher forcing compute), log q is read from a normalised distribution — the one the logit
  controls left, recorded by spies around them, or the changed context's / hooked model's
  teacher-forced one — and `log_weight` = Σ log p_base − Σ log q of those. Logit controls: the fast
  paths (pools, masks only, point mass) sample what the general path samples.
- batch-size invariance: the same samples at batch size 1 and 8;
- continuous-batching invariance: more rows than the batch, slots refilled (when every control
  `can_restart_row`), against fixed batches; the refills are counted to show they happened;
- resampling (logit controls that `can_select_rows`): rows re-indexed mid-decode continue as the
  rows they copy;
- seed reproducibility: same seed, same samples (with the same instances and fresh ones); another
  seed, other samples.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from random_adapters import random_adapter

import steering.controls as exported
from steering.condition import Target, contains, smc
from steering.controls import (
    PPLM,
    QA,
    Adapter,
    BagOfWords,
    CallableControl,
    ChatTemplate,
    Choices,
    FewShot,
    ForcedSpan,
    ForceTokens,
    Greedy,
    Instruction,
    JsonSchema,
    Lark,
    LogitBias,
    LogitControlBase,
    MinP,
    MixedAdapters,
    PromptTemplate,
    QuoteFromSource,
    Regex,
    SoftPrompt,
    Temperature,
    TopK,
    TopP,
    build_steering_vector,
    demonstrations,
    forward_rows,
    split_controls,
)
from steering.decode import BatchDecoder, DecodeRow, generate, row_seed
from steering.errors import InvalidArgument
from steering.models import LanguageModel, load_model

ATOL = 1e-4  # KV-cached batched decoding against teacher-forced scoring, float32
PROMPTS = ("Once upon a time there", "a b", "Label:", "x")  # two longer than the 8-token sliding window
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@dataclass(frozen=True)
class Case:
    """How to build one control (and whatever it needs) for the tiny model, and what to run it on."""

    build: Callable[[LanguageModel, Path], list[object]]
    prompts: tuple[str, ...] = PROMPTS
    max_new_tokens: int = 8
    deterministic: bool = False  # every seed gives the same samples (greedy)


def _random_adapter(model: LanguageModel, directory: Path, name: str = "adapter", seed: int = 0) -> Path:
    """A LoRA adapter with random (non-zero) weights in `directory/name` (made once per directory)."""
    path = directory / name
    return path if path.is_dir() else random_adapter(model, path, seed=seed, name="conformance")


def _adapter(model: LanguageModel, directory: Path) -> list[object]:
    return [Adapter(_random_adapter(model, directory))]


def _mixed_adapters(model: LanguageModel, directory: Path) -> list[object]:
    """Prompts 0 and 3 wear one adapter, prompt 1 the base, prompt 2 another: all in one batch."""
    first, second = _random_adapter(model, directory), _random_adapter(model, directory, "other", seed=1)
    return [MixedAdapters([first, None, second, first])]


def _steering_vector(model: LanguageModel, _: Path) -> list[object]:
    vector = build_steering_vector(
        model, positive=["good day", "nice"], negative=["bad", "awful"], layers=[0]
    )
    return [vector.with_alpha(4.0)]


def _soft_prompt(model: LanguageModel, _: Path) -> list[object]:
    hidden = model.module.get_input_embeddings().weight.shape[1]
    vectors = torch.randn((3, hidden), generator=torch.Generator().manual_seed(1))
    return [SoftPrompt(vectors, placeholder="<pad>")]


def _xgrammar_missing() -> bool:
    try:
        import xgrammar  # noqa: F401
    except ImportError:
        return True
    return False


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
LARK = 'start: "(" item ("," item)* ")"\nitem: "a" | "b" | "ab"'

# Every exported control class → its cases. A new control: add an entry here (one line usually).
FACTORIES: dict[str, list[Case]] = {
    "Temperature": [Case(lambda m, d: [Temperature(0.7)])],
    "TopK": [Case(lambda m, d: [TopK(5)])],
    "TopP": [Case(lambda m, d: [TopP(0.8)])],
    "MinP": [Case(lambda m, d: [MinP(0.02)])],  # 0.1 leaves one token on the tiny model
    "Greedy": [Case(lambda m, d: [Greedy()], deterministic=True)],
    "LogitBias": [
        Case(lambda m, d: [LogitBias({"a": 3.0, 40: -2.0})]),
        Case(lambda m, d: [BagOfWords(["the", "cat"], 2.5)]),
    ],
    "CallableControl": [
        Case(lambda m, d: [CallableControl(_hf_top_k(7))]),
        Case(lambda m, d: [lambda input_ids, scores: scores / 0.8]),  # a function: wrapped at the edge
    ],
    "Choices": [Case(lambda m, d: [Choices([" yes", " no", " maybe so"])], max_new_tokens=10)],
    "ForcedSpan": [
        Case(
            lambda m, d: [ForcedSpan("[", ["Paris]", "Rome]"])],
            prompts=("See [", "a link", "Once upon [x] a"),
        )
    ],
    "ForceTokens": [
        Case(lambda m, d: [ForceTokens({1: " x", 4: "y"})]),
        Case(lambda m, d: [ForceTokens({0: "a", 3: "b"}, strength=3.0)]),
    ],
    "Grammar": [
        Case(lambda m, d: [Regex("[a-c]{1,4};")]),
        Case(lambda m, d: [JsonSchema(SCHEMA)], max_new_tokens=10),
        Case(lambda m, d: [Lark(LARK)]),
        Case(lambda m, d: [Regex("[a-c]{1,4};", backend="xgrammar")]),
    ],
    "QuoteFromSource": [
        Case(
            lambda m, d: [QuoteFromSource("the cat sat on the mat")],
            prompts=('He said "', "She wrote", 'x "the c'),
        )
    ],
    "PPLM": [Case(lambda m, d: [PPLM(["a"], iterations=1, step_size=0.1)], max_new_tokens=5)],
    "PromptTemplate": [
        Case(lambda m, d: [PromptTemplate("Say: {prompt}\n")]),
        Case(lambda m, d: [QA()]),
    ],
    "FewShot": [Case(lambda m, d: [FewShot(demonstrations([("a b", "c"), ("x", "y z")]))])],
    "Instruction": [Case(lambda m, d: [Instruction("Be brief.")])],
    "ChatTemplate": [Case(lambda m, d: [ChatTemplate(system="Answer.")])],
    "SoftPrompt": [Case(_soft_prompt)],
    "SteeringVector": [Case(_steering_vector)],
    "Adapter": [Case(_adapter)],
    "MixedAdapters": [Case(_mixed_adapters)],
}
NEEDS_XGRAMMAR = {("Grammar", 3)}


def _hf_top_k(k: int) -> object:
    from transformers import TopKLogitsWarper

    return TopKLogitsWarper(top_k=k)


def _control_classes() -> dict[str, type]:
    """The control classes `steering.controls` exports: logit controls (the base class, or anything
    defining `__call__`), context controls (`render`) and model controls (`attached`)."""
    found = {}
    for name in exported.__all__:
        value = getattr(exported, name)
        if not inspect.isclass(value) or getattr(value, "_is_protocol", False) or inspect.isabstract(value):
            continue
        is_logit = issubclass(value, LogitControlBase) or "__call__" in vars(value)
        if is_logit or hasattr(value, "render") or hasattr(value, "attached"):
            found[name] = value
    return found


def test_every_exported_control_has_a_factory():
    missing = sorted(set(_control_classes()) - set(FACTORIES))
    assert not missing, (
        f"steering.controls exports {missing} without a conformance factory: add an entry for each to "
        "FACTORIES in tests/controls/test_conformance.py (a Case that builds it for the tiny model)"
    )
    stale = sorted(set(FACTORIES) - set(_control_classes()))
    assert not stale, f"FACTORIES has entries for classes steering.controls does not export: {stale}"


CASES = [
    pytest.param(
        name,
        case,
        id=f"{name}-{index}",
        marks=[pytest.mark.skipif(_xgrammar_missing(), reason="xgrammar is not importable")]
        if (name, index) in NEEDS_XGRAMMAR
        else [],
    )
    for name, cases in FACTORIES.items()
    for index, case in enumerate(cases)
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Files the factories write (the adapter), shared by every case of the module."""
    return tmp_path_factory.mktemp("conformance")


@pytest.fixture(scope="module")
def model():
    """This module's own tiny model (the adapter case loads a LoRA into it; the chat case needs a template)."""
    tiny = load_model("tiny-random", dtype="float32")
    tiny.tokenizer.chat_template = CHAT_TEMPLATE
    return tiny


def test_each_case_builds_its_class(model, workdir):
    for name, cases in FACTORIES.items():
        cls = getattr(exported, name)
        for case in cases:
            built = case.build(model, workdir)
            _, logits, _ = split_controls(built)
            assert any(isinstance(c, cls) for c in [*built, *logits]), (name, built)


def _kind(controls: Sequence[object]) -> str:
    context, _, model_controls = split_controls(controls)
    if model_controls:
        return "model"
    return "context" if context else "logit"


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.token_ids == y.token_ids
        assert x.stop_reason == y.stop_reason
        assert x.text == y.text
        assert torch.allclose(x.logq, y.logq, atol=ATOL)
        assert torch.allclose(x.logp_base, y.logp_base, atol=ATOL, equal_nan=True)


class _Spy(LogitControlBase):
    """Records the scores it sees at every step and passes them on unchanged."""

    def __init__(self) -> None:
        self.scores: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.scores.append(scores.detach().clone())
        return scores


class _FixedBatches(LogitControlBase):
    """Changes nothing and takes every fast path, but cannot restart a row: batches stay fixed."""

    can_restart_row = False
    masks_only = True
    offers_token_pools = True

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores

    def token_pools(self, input_ids: torch.Tensor, vocab: int) -> list[torch.Tensor | None]:
        return [None] * input_ids.shape[0]


def _teacher_forced(model: LanguageModel, prompt_ids: list[int], tokens: list[int]) -> torch.Tensor:
    return model.logprobs([prompt_ids], [tokens])[0]


@pytest.mark.parametrize(("name", "case"), CASES)
def test_books_are_exact(model, workdir, name, case):
    controls = case.build(model, workdir)
    prompt = case.prompts[0]
    kwargs = {"n": 4, "max_new_tokens": case.max_new_tokens, "seed": 3, "batch_size": 4}
    samples = generate(model, [prompt], controls=controls, **kwargs)
    raw = model.encode(prompt)
    kind = _kind(controls)
    for sample in samples:
        # log p_base: the plain model on the raw prompt, token by token (what enumeration sums).
        base = _teacher_forced(model, raw, sample.token_ids)
        assert torch.allclose(sample.logp_base, base, atol=ATOL), (sample.logp_base, base)
    if kind == "logit":
        _check_logit_books(model, prompt, controls, samples, kwargs)
        return
    _, _, model_controls = split_controls(controls)
    for sample in samples:
        assert sample.step_kl is None  # another context or model: the per-step KL is not exact
        with _attached(model, model_controls), forward_rows([sample.prompt_index]):
            logq = _teacher_forced(model, model.encode(sample.context), sample.token_ids)
        assert torch.allclose(sample.logq, logq, atol=ATOL), (sample.logq, logq)
        log_weight = float(sample.logp_base.double().sum() - logq.double().sum())
        assert sample.log_weight == pytest.approx(log_weight, abs=1e-3)


def _attached(model, model_controls):
    from contextlib import ExitStack

    stack = ExitStack()
    for control in model_controls:
        stack.enter_context(control.attached(model))
    return stack


def _check_logit_books(model, prompt, controls, samples, kwargs) -> None:
    """Spies before and after the controls record p_t and the scores q_t is normalised from."""
    first, last = _Spy(), _Spy()
    spied = generate(model, [prompt], controls=[first, *controls, last], **kwargs)
    _same(spied, samples)  # the fast paths sample what the general path samples
    for row, sample in enumerate(samples):
        log_q_total, log_p_total = 0.0, 0.0
        for step, token in enumerate(sample.token_ids):
            logp = first.scores[step][row]
            logq = last.scores[step][row].double().log_softmax(-1)
            assert logq.exp().sum().item() == pytest.approx(1.0, abs=1e-6)  # q_t normalises over V
            assert sample.logp_base[step].item() == pytest.approx(logp[token].item(), abs=ATOL)
            assert sample.logq[step].item() == pytest.approx(logq[token].item(), abs=ATOL)
            kl = (logq.exp() * (logq - logp.double()).nan_to_num(0.0, posinf=0.0, neginf=0.0)).sum()
            assert sample.step_kl[step].item() == pytest.approx(kl.item(), abs=1e-3)
            log_q_total += logq[token].item()
            log_p_total += logp[token].item()
        assert sample.log_weight == pytest.approx(log_p_total - log_q_total, abs=1e-3)


@pytest.mark.parametrize(("name", "case"), CASES)
def test_same_samples_at_batch_size_1_and_8(model, workdir, name, case):
    kwargs = {"n": 4, "max_new_tokens": case.max_new_tokens, "seed": 5}
    prompts = list(case.prompts[:2])
    wide = generate(model, prompts, controls=case.build(model, workdir), batch_size=8, **kwargs)
    narrow = generate(model, prompts, controls=case.build(model, workdir), batch_size=1, **kwargs)
    _same(narrow, wide)


@pytest.mark.parametrize(("name", "case"), CASES)
def test_refilled_slots_sample_what_fixed_batches_sample(model, workdir, name, case):
    kwargs = {"n": 2, "max_new_tokens": case.max_new_tokens, "seed": 7, "batch_size": 3}
    prompts = list(case.prompts)
    controls = case.build(model, workdir)
    refilled = generate(model, prompts, controls=controls, **kwargs)
    fixed = generate(model, prompts, controls=[_FixedBatches(), *case.build(model, workdir)], **kwargs)
    _same(refilled, fixed)
    assert fixed.stats.refilled_rows == 0
    _, logits, _ = split_controls(controls)
    if all(c.can_restart_row for c in logits):
        assert refilled.stats.refilled_rows > 0  # slots really were refilled
    else:
        assert refilled.stats.refilled_rows == 0


@pytest.mark.parametrize(("name", "case"), CASES)
def test_resampled_rows_continue_as_the_rows_they_copy(model, workdir, name, case):
    context, logits, model_controls = split_controls(case.build(model, workdir))
    if context or model_controls or not all(c.can_select_rows for c in logits):
        # Not a proposal SMC may resample: SMC must refuse it rather than resample it wrongly.
        target = Target(model, case.prompts[0], [contains("a")], max_new_tokens=case.max_new_tokens)
        with pytest.raises(InvalidArgument, match="proposal"):
            smc(target, n_particles=2, proposal=case.build(model, workdir))
        return
    ids = [model.encode(p) for p in case.prompts[:3]]

    def decode(permute_after: int | None) -> list[DecodeRow]:
        rows = [
            DecodeRow(prompt_index=j, sample_index=0, context_ids=c, generator=_generator(j))
            for j, c in enumerate(ids)
        ]
        _, controls, _ = split_controls(case.build(model, workdir))
        decoder = BatchDecoder(model, rows, controls=controls)
        for step in range(case.max_new_tokens):
            if step == permute_after:
                order = list(reversed(range(len(rows))))
                decoder.select(order, [decoder.rows[i].generator for i in order])
            if not decoder.step(last=step == case.max_new_tokens - 1):
                break
        decoder.finish()
        return decoder.rows

    straight, permuted = decode(None), decode(2)
    for j, row in enumerate(permuted):
        twin = straight[len(straight) - 1 - j]
        assert row.prompt_index == twin.prompt_index
        assert row.tokens == twin.tokens
        assert row.stop_reason == twin.stop_reason
        assert torch.allclose(torch.tensor(row.logq), torch.tensor(twin.logq), atol=ATOL)


def _generator(index: int) -> torch.Generator:
    return torch.Generator().manual_seed(row_seed(11, index, 0))


@pytest.mark.parametrize(("name", "case"), CASES)
def test_same_seed_same_samples(model, workdir, name, case):
    kwargs = {"n": 3, "max_new_tokens": case.max_new_tokens, "batch_size": 4}
    prompts = list(case.prompts[:2])
    controls = case.build(model, workdir)
    first = generate(model, prompts, controls=controls, seed=1, **kwargs)
    again = generate(model, prompts, controls=controls, seed=1, **kwargs)  # the same instances, reused
    fresh = generate(model, prompts, controls=case.build(model, workdir), seed=1, **kwargs)
    _same(again, first)
    _same(fresh, first)
    other = generate(model, prompts, controls=controls, seed=2, **kwargs)
    differs = [a.token_ids != b.token_ids for a, b in zip(first, other, strict=True)]
    assert any(differs) != case.deterministic
