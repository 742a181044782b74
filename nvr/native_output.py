"""Keep native libraries' chatter off the user's terminal.

Some C++ runtimes print informational lines straight to file descriptor 2 (LiteRT prints
"INFO: Created TensorFlow Lite XNNPACK delegate for CPU." for every interpreter), which neither Python's
`sys.stderr` nor an environment variable controls. `filtered_stderr` points fd 2 at a temporary file for the
duration of a call and afterwards writes back every line that is not known noise, so real warnings and
errors still reach the user (a moment later), and only the noise is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

# One redirection at a time: fd 2 is process-wide.
_lock = threading.Lock()


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[bytes]) -> Iterator[None]:
    """Run the body with fd 2 captured; afterwards pass on the captured lines that do not match `noise`."""
    with _lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        capture.seek(0)
        kept = [line for line in capture.read().splitlines(keepends=True) if not noise.match(line)]
        if kept:
            os.write(2, b"".join(kept))
