"""Writing samples to stdout as they finish, so that Ctrl-C loses no finished sample.

`generate(on_sample=…)` calls its function with Ctrl-C held back, so each line is written whole; the
line is flushed at once, so a reader (or a file) has it even if the process is killed next.
"""

from __future__ import annotations

import json
from typing import TextIO

from steering.decode import Sample


class JsonlStream:
    """Writes each sample as one JSON line (`Sample.to_record()`) and flushes it; counts the lines.

    Args:
        out: where to write (stdout).
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.written = 0

    def __call__(self, sample: Sample) -> None:
        self.out.write(json.dumps(sample.to_record()) + "\n")
        self.out.flush()
        self.written += 1
