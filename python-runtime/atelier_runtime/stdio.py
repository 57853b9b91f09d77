"""Keep stdout for machine-readable output only.

Libraries print: warnings, progress bars, even C code writing to file descriptor 1. A program whose
stdout is a protocol (the worker) or one JSON line (the tiny-model CLI, the bare benchmark) takes
the real stdout for itself and points descriptor 1, and ``sys.stdout``, at stderr.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO


def claim_stdout() -> BinaryIO:
    """Return a binary stream on the original stdout; from now on fd 1 and sys.stdout go to stderr."""
    sys.stdout.flush()
    private_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(private_fd, "wb", buffering=1 << 16)


def write_json_line(stream: BinaryIO, obj) -> None:
    import json

    stream.write((json.dumps(obj) + "\n").encode("utf-8"))
    stream.flush()
