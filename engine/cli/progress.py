"""The CLI's progress bars: tqdm on stderr, one line that redraws itself on a terminal, plain periodic lines
when stderr is not a terminal (a log file, a pipe, CI); every subcommand's ``--quiet`` makes none.

:func:`progress_bar` makes the bar; :func:`say` prints a message line without breaking the bar. Used by
``train``, ``race`` and ``regression``; a new subcommand with a long loop should use them too.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm

PLAIN_EVERY_S = 5.0
"""Seconds between two plain lines when stderr is not a terminal."""
TERMINAL_EVERY_S = 0.1
PLAIN_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:3.0f}%) elapsed {elapsed}, eta {remaining}, {rate_fmt}{postfix}"


class _Lines:
    """A file for tqdm that turns each redraw (``"\\r" + text``) into one plain line (no control characters)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _Bar(tqdm):
    monitor_interval = 0  # no monitor thread in a training process


def is_terminal(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def progress_bar(total: int, desc: str, *, stream: IO[str] | None = None, initial: int = 0, unit: str = "step",
                 every_s: float | None = None) -> tqdm:
    """A tqdm bar of ``total`` units on ``stream`` (default stderr) with rate and ETA.

    On a terminal it redraws one line (at most every 0.1 s); otherwise it prints a plain line at most every
    ``every_s`` seconds (default :data:`PLAIN_EVERY_S`), plus the first and the last."""
    stream = stream or sys.stderr
    if is_terminal(stream):
        return _Bar(total=total, initial=initial, desc=desc, unit=unit, file=stream, dynamic_ncols=True,
                    mininterval=TERMINAL_EVERY_S if every_s is None else every_s, leave=True)
    return _Bar(total=total, initial=initial, desc=desc, unit=unit, file=_Lines(stream), ascii=True,
                mininterval=PLAIN_EVERY_S if every_s is None else every_s, miniters=1, bar_format=PLAIN_FORMAT,
                leave=True)


def move_to(bar: tqdm, position: int, postfix: str | None = None) -> None:
    """Set the bar to ``position`` (absolute), with ``postfix`` after the rate; redraws as its interval allows."""
    if postfix is not None:
        bar.set_postfix_str(postfix, refresh=False)
    bar.update(position - bar.n)


def say(text: str, bar: tqdm | None = None, stream: IO[str] | None = None) -> None:
    """Print ``text`` as its own line: above the bar on a terminal (the bar redraws under it)."""
    stream = stream or sys.stderr
    if bar is not None and is_terminal(stream):
        bar.write(text, file=stream)
    else:
        stream.write(text + "\n")
        stream.flush()
