"""The decoder's public API: `DecodeRow`, `BatchDecoder.lookahead`, and the counters in `DecodeStats`."""

from __future__ import annotations

import pytest
import torch

from steering.controls import Temperature
from steering.decode import BatchDecoder, DecodeRow, DecodeStats, generate, row_seed

PROMPTS = ["Once upon a time there", "a b", "x"]


def _rows(model, prompts=PROMPTS):
    return [
        DecodeRow(
            prompt_index=j,
            sample_index=0,
            context_ids=model.encode(p),
            generator=torch.Generator().manual_seed(row_seed(0, j, 0)),
        )
        for j, p in enumerate(prompts)
    ]


def test_decode_rows_are_built_with_keywords(tiny):
    with pytest.raises(TypeError):
        DecodeRow(0, 0, [1], torch.Generator())  # type: ignore[misc]
    a, b = _rows(tiny)[:2]
    a.tokens.append(5)
    assert b.tokens == [] and a.stop_reason is None and a.budget == 0


def test_lookahead_scores_a_continuation_and_leaves_the_decoder_as_it_was(tiny):
    continuation = tiny.encode_continuation(" the end")
    probe = BatchDecoder(tiny, _rows(tiny), controls=[Temperature(0.8)])
    plain = BatchDecoder(tiny, _rows(tiny), controls=[Temperature(0.8)])
    for _ in range(3):
        probe.step()
        plain.step()
    scored = probe.lookahead(continuation)
    assert scored.shape == (len(PROMPTS), len(continuation)) and scored.dtype == torch.float64
    # Teacher forcing of context + sampled tokens + continuation gives the same numbers.
    live = [(i, row) for i, row in enumerate(probe.rows) if row.stop_reason is None]
    assert live
    for i, row in live:  # an ended row's cache goes on with padding, not its tokens
        expected = tiny.logprobs([row.context_ids + row.tokens], [continuation])[0].double()
        assert torch.allclose(scored[i], expected, atol=1e-4), (scored[i], expected)
    assert probe.lookahead(continuation[:1]).shape == (len(PROMPTS), 1)
    assert probe.stats.lookahead_forwards == 1  # one token is read from the pending logits
    for _ in range(4):  # the cache, mask and logits were left alone: decoding goes on unchanged
        probe.step()
        plain.step()
    for a, b in zip(probe.rows, plain.rows, strict=True):
        assert a.tokens == b.tokens
        assert torch.allclose(torch.tensor(a.logq), torch.tensor(b.logq), atol=1e-5)


def test_generate_reports_its_counters(tiny):
    samples = generate(tiny, PROMPTS, n=2, max_new_tokens=5, batch_size=6, seed=4)
    stats = samples.stats
    assert isinstance(stats, DecodeStats)
    longest = max(len(s.token_ids) for s in samples)
    assert stats.prefill_forwards == 1 and stats.prefilled_rows == 6 and stats.refilled_rows == 0
    assert stats.sample_calls == longest and stats.step_forwards == longest - 1
    assert stats.decode_s >= stats.sample_s + stats.step_s + stats.prefill_s > 0


def test_refills_are_counted(tiny):
    samples = generate(tiny, PROMPTS, n=4, max_new_tokens=6, batch_size=3, seed=4)
    stats = samples.stats
    assert stats.refilled_rows == len(samples) - 3  # every row past the first batch takes a freed slot
    assert stats.prefilled_rows == len(samples)
    assert stats.refill_s > 0 and stats.prefill_forwards >= 2


def test_a_decoder_fills_the_stats_it_is_given(tiny):
    stats = DecodeStats()
    decoder = BatchDecoder(tiny, _rows(tiny), controls=[lambda ids, scores: scores], stats=stats)
    decoder.step()
    decoder.step(last=True)
    assert decoder.stats is stats
    assert (stats.prefill_forwards, stats.sample_calls, stats.step_forwards) == (1, 2, 1)
