"""`DecodeStats`: what the decoder did and how long each part took, for benchmarks and logs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DecodeStats:
    """Counts and wall-clock seconds of a decoder's work (`time.perf_counter` around calls, no device sync).

    `generate` returns its run's stats on `Samples.stats`; a `BatchDecoder` fills `decoder.stats` (or
    the object it was given). On a GPU, kernels run asynchronously: time spent waiting for them lands
    in the call that reads results back (`sample`).

    Attributes:
        prefill_forwards: forwards over new prompts (a decoder's first rows, then each group of
            waiting rows prefilled for refills).
        prefilled_rows: rows those forwards prefilled.
        step_forwards: one-token forwards of the whole batch (`advance`).
        sample_calls: draws of the next token of every live row (`sample`).
        refilled_rows: rows put into the slots of ended rows (continuous batching).
        lookahead_forwards: teacher-forced passes of `lookahead`.
        prefill_s: seconds in prefill forwards.
        step_s: seconds in step forwards.
        sample_s: seconds drawing tokens (controls, the draw, the books, stop checks).
        refill_s: seconds refilling slots (the prefills it ran included).
        lookahead_s: seconds in `lookahead`.
        decode_s: seconds of `generate`'s whole decoding loop (every part above, not the rescoring
            of the sampled tokens on the raw prompt).
    """

    prefill_forwards: int = 0
    prefilled_rows: int = 0
    step_forwards: int = 0
    sample_calls: int = 0
    refilled_rows: int = 0
    lookahead_forwards: int = 0
    prefill_s: float = 0.0
    step_s: float = 0.0
    sample_s: float = 0.0
    refill_s: float = 0.0
    lookahead_s: float = 0.0
    decode_s: float = 0.0
