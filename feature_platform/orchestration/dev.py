"""`make ui`: run ``dagster dev`` (or ``dg dev``) so that Ctrl-C and SIGTERM stop it and its children.

A process started in the background by a non-interactive shell (``make ui &``, a supervisor, CI) inherits
SIGINT as *ignored*; ``dagster dev`` maps SIGTERM to its SIGINT handler, so it would then ignore both and
outlive ``make``. This resets both signals to their defaults and execs the command in place (same pid, so
``make`` and the terminal signal it directly).

    python -m feature_platform.orchestration.dev COMMAND [ARG ...]
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn


def exec_with_default_signals(argv: Sequence[str]) -> NoReturn:
    if not argv:
        sys.stderr.write("usage: python -m feature_platform.orchestration.dev COMMAND [ARG ...]\n")
        raise SystemExit(2)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        sys.stderr.write(f"feature_platform.orchestration.dev: cannot run {argv[0]!r}: {exc.strerror}\n")
        raise SystemExit(127) from None


if __name__ == "__main__":
    exec_with_default_signals(sys.argv[1:])
