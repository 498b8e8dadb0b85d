"""`SampleHandoff`: give finished samples to the caller's `on_sample` while `generate` runs.

The caller sees the samples in the order of the `Samples` that `generate` returns (prompt-major),
each exactly once: a sample is handed over as soon as it and every sample before it are complete.
When decoding is interrupted (KeyboardInterrupt), the samples that were complete are handed over,
still in that order (a gap where a sample was not finished), before the interrupt goes on; the same
after decoding, while the last samples are built (and rescored) and handed over.

A row counts as complete only once the decoder's step that ended it has returned, so a row caught
half-recorded by the interrupt is never handed over. Each `on_sample` call runs with Ctrl-C held
back (`interrupts_held`) and raised right after it, so a caller that writes a line per sample writes
whole lines, and no sample is handed over twice or lost between "handed" and the call.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from steering.decode.rows import DecodeRow
from steering.decode.samples import Sample

OnSample = Callable[[Sample], None]


class SampleHandoff:
    """Tracks which rows are complete and which samples the caller has had.

    Args:
        rows: every row of the call, prompt-major (the order of the returned `Samples`).
        build: turns rows into their `Sample`s (the books included).
        on_sample: the caller's function, or None (then nothing is tracked).
        during_decoding: hand samples over while decoding; False when their books need the base
            rescoring pass, which runs after decoding (or after an interrupt).
    """

    def __init__(
        self,
        rows: Sequence[DecodeRow],
        *,
        build: Callable[[list[DecodeRow]], list[Sample]],
        on_sample: OnSample | None,
        during_decoding: bool,
    ) -> None:
        self.rows = list(rows)
        self.build, self.on_sample = build, on_sample
        self.during_decoding = during_decoding and on_sample is not None
        self.index = {id(row): i for i, row in enumerate(self.rows)}
        self.complete = [False] * len(self.rows)
        self.handed = [False] * len(self.rows)
        self.next = 0  # every sample before this one has been handed over

    def ended(self, rows: Sequence[DecodeRow]) -> None:
        """Called after each decoder step: mark the rows that have ended, hand over what is ready."""
        if self.on_sample is None:
            return
        for row in rows:
            if row.stop_reason is not None:
                self.complete[self.index[id(row)]] = True
        if not self.during_decoding:
            return
        while self.next < len(self.rows) and self.complete[self.next]:
            index = self.next
            self.next += 1
            self._hand(index, self.build([self.rows[index]])[0])

    def interrupted(self) -> None:
        """Hand over every complete sample not yet handed over (the decoder has been left)."""
        if self.on_sample is None:
            return
        waiting = [i for i, done in enumerate(self.complete) if done and not self.handed[i]]
        if not waiting:
            return
        for index, sample in zip(waiting, self.build([self.rows[i] for i in waiting]), strict=True):
            self._hand(index, sample)

    def finished(self, *, chunk: int) -> list[Sample]:
        """Decoding ended: build every sample, hand over the ones not handed yet, in order; return all.

        With `on_sample`, samples are built `chunk` rows at a time (the rescoring pass, when needed,
        runs chunk by chunk) and each chunk is handed over before the next is built; a Ctrl-C here
        hands over the samples already built, then goes on.
        """
        if self.on_sample is None:
            return self.build(self.rows)
        samples: list[Sample] = []
        try:
            for start in range(0, len(self.rows), chunk):
                samples += self.build(self.rows[start : start + chunk])
                for index in range(start, len(samples)):
                    if not self.handed[index]:
                        self._hand(index, samples[index])
        except KeyboardInterrupt:
            for index, sample in enumerate(samples):
                if not self.handed[index]:
                    self._hand(index, sample)
            raise
        return samples

    def _hand(self, index: int, sample: Sample) -> None:
        assert self.on_sample is not None
        with interrupts_held():
            self.handed[index] = True
            self.on_sample(sample)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold back SIGINT inside the block; a Ctrl-C that came in is raised as KeyboardInterrupt after it.

    Only in the main thread (the one Python delivers signals to); elsewhere the block just runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt
