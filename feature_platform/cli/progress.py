"""Progress for long commands, drawn by rich on stderr only when stderr is a terminal.

Off with ``--json`` (the output is a document) and with ``-v`` (the printed progress lines or Dagster's event log
already say what is happening), and always off in a pipe, a file or a test.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Update = Callable[[int, int | None], None]  # (done, total or None): the domain's progress callback


def wanted(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and not getattr(args, "verbose", False) and sys.stderr.isatty()


@contextmanager
def spinner(args: argparse.Namespace, message: str) -> Iterator[None]:
    """A spinner with elapsed time around a call that reports no progress of its own (a Dagster run)."""
    if not wanted(args):
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


@contextmanager
def bar(args: argparse.Namespace, message: str) -> Iterator[Update | None]:
    """A transient progress bar fed by the domain's ``progress(done, total)`` callback; None when off."""
    if not wanted(args):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(message, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update
