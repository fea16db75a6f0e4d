"""How far a run over many schemas is: a bar on a terminal, a line now and then elsewhere."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.management.base import OutputWrapper

#: Off a terminal, a line each time another tenth of the schemas is done...
STEPS = 10
#: ...or when this many seconds passed since the last line, whichever comes first.
INTERVAL_S = 10.0
#: On a terminal, the bar is redrawn at most this often (seconds), unless lines were written
#: over it, and at the end.
REDRAW_S = 0.1


def duration(seconds: float) -> str:
    """``42s``, ``3m12s`` or ``2h05m``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02}s"
    return f"{whole // 3600}h{whole // 60 % 60:02}m"


class Progress:
    """The progress of a run over ``total`` schemas, ``known`` of them done before it starts.

    At verbosity 1 on a terminal: a bar redrawn in place. At verbosity 1 elsewhere: a
    ``Progress:`` line every tenth of the schemas or every ``interval`` seconds. At
    verbosity 2 and more: a ``Progress:`` line after each schema. Nothing at verbosity 0,
    or for a single schema.
    """

    def __init__(
        self,
        out: OutputWrapper,
        total: int,
        verbosity: int,
        *,
        known: int = 0,
        interval: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.total = total
        self.known = known
        self.interval = interval
        self.clock = clock
        self.started = self.last = clock()
        self.done = known
        self.failed = 0
        self.drawn = False
        self.mode = ""
        if verbosity >= 2 and total > 1:
            self.mode = "each"
        elif verbosity == 1 and total > 1:
            self.mode = "bar" if out.isatty() else "steps"

    def advance(self, failed: bool) -> None:
        """Count one more schema done (``failed`` or not) and show it as the mode says."""
        step = self.done * STEPS // self.total
        self.done += 1
        self.failed += failed
        now = self.clock()
        if self.mode == "each":
            self.out.write(self.line())
        elif self.mode == "steps" and self.done < self.total:
            if self.done * STEPS // self.total > step or now - self.last >= self.interval:
                self.out.write(self.line())
                self.last = now
        elif self.mode == "bar" and (
            not self.drawn or now - self.last >= REDRAW_S or self.done == self.total
        ):
            self._draw()
            self.last = now

    def left(self) -> str:
        """What is left, estimated from the pace of the schemas run so far."""
        run = self.done - self.known
        if self.done >= self.total or run <= 0:
            return ""
        seconds = (self.clock() - self.started) / run * (self.total - self.done)
        return f", about {duration(seconds)} left"

    def line(self) -> str:
        return f"Progress: {self.done}/{self.total} schemas, {self.failed} failed{self.left()}"

    def _draw(self) -> None:
        text = f" {self.done}/{self.total} schemas, {self.failed} failed{self.left()}"
        columns = shutil.get_terminal_size().columns
        width = max(10, min(40, columns // 3))  # the same at every redraw
        filled = self.done * width // self.total
        percent = self.done * 100 // self.total
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {percent:3}%{text}"
        # \r and "erase to the end of the line" (ECMA-48 EL): redrawn in place.
        self.out.write(f"\r{bar[: columns - 1]}\x1b[K", ending="")
        self.out.flush()
        self.drawn = True

    @contextmanager
    def above(self) -> Iterator[None]:
        """Clear the bar for lines written in this block; the next ``advance`` draws it again."""
        if self.drawn:
            self.out.write("\r\x1b[K", ending="")
            self.out.flush()
            self.drawn = False
        yield

    def finish(self) -> None:
        """End the bar's line, so that what follows starts on a line of its own."""
        if self.drawn:
            self.out.write("")
            self.drawn = False
