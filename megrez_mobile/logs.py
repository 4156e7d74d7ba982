"""Keep the libraries' chatter for their own developers out of our users' output.

Two sources reach a user's terminal uninvited:
* Python loggers: torchao reports optional CUDA kernels it cannot load on a CPU machine ("Failed to load
  ..._C_mxfp8..."), torch's pytree a deprecation meant for torchao's authors;
* ExecuTorch's C++ runtime, which logs CPU probing ("[cpuinfo_utils.cpp:71] Reading file ...") to file descriptor 2
  the first time an XNNPACK method is loaded, i.e. in the middle of a streamed answer.
Anything else those sources say (a real error) still gets through.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

# Loggers whose warnings are about the libraries' own packaging, never about the user's model or data.
_NOISY_LOGGERS = ("torchao", "torch.utils._pytree")
# Native log lines that only describe the CPU probing of the threadpool.
_NATIVE_NOISE = re.compile(rb"^\[cpuinfo_utils\.cpp:\d+\] ")
_fd_lock = threading.RLock()


def quiet_library_logs() -> None:
    """Silence the known noisy loggers below ERROR. Call before torchao is first imported (idempotent)."""
    import torch  # noqa: F401 - torch configures its loggers on import; set ours after it

    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Capture what native code writes to fd 2 inside the block; re-emit all but the known CPU-probing lines."""
    with _fd_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(keepends=True) if not _NATIVE_NOISE.match(line)]
                if kept:
                    os.write(2, b"".join(kept))
