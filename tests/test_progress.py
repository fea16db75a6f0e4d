"""Progress of a run over many schemas: a bar on a terminal, a line now and then elsewhere."""

from __future__ import annotations

import os
import pty
import select
import time
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management.base import OutputWrapper

from schemata.progress import Progress, duration


class Clock:
    """The time a test says it is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def read_terminal(main: int, until: str, timeout: float = 10) -> str:
    """What the terminal shows once it ends with ``until`` (it may come in several reads),
    with the terminal's "\\r\\n" turned back into "\\n"."""
    raw = b""
    deadline = time.monotonic() + timeout
    while not raw.decode().replace("\r\n", "\n").endswith(until):
        ready, _, _ = select.select([main], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        raw += os.read(main, 65536)
    return raw.decode().replace("\r\n", "\n")


def lines_of(
    total: int,
    verbosity: int,
    seconds_each: float,
    failed: frozenset[int] = frozenset(),
    **kwargs: int,
) -> list[str]:
    out, clock = StringIO(), Clock()
    progress = Progress(OutputWrapper(out), total, verbosity, clock=clock, **kwargs)
    for number in range(kwargs.get("known", 0) + 1, total + 1):
        clock.now += seconds_each
        progress.advance(number in failed)
    progress.finish()
    return out.getvalue().splitlines()


def test_off_a_terminal_a_line_at_each_tenth_of_the_schemas_but_the_last() -> None:
    lines = lines_of(20, 1, 1.0, failed=frozenset({3}))

    assert lines == [
        "Progress: 2/20 schemas, 0 failed, about 18s left",
        "Progress: 4/20 schemas, 1 failed, about 16s left",
        "Progress: 6/20 schemas, 1 failed, about 14s left",
        "Progress: 8/20 schemas, 1 failed, about 12s left",
        "Progress: 10/20 schemas, 1 failed, about 10s left",
        "Progress: 12/20 schemas, 1 failed, about 8s left",
        "Progress: 14/20 schemas, 1 failed, about 6s left",
        "Progress: 16/20 schemas, 1 failed, about 4s left",
        "Progress: 18/20 schemas, 1 failed, about 2s left",
    ]


def test_off_a_terminal_a_line_every_interval_between_tenths() -> None:
    lines = lines_of(1000, 1, 3.0)

    assert lines[:2] == [
        "Progress: 4/1000 schemas, 0 failed, about 49m48s left",
        "Progress: 8/1000 schemas, 0 failed, about 49m36s left",
    ]
    assert len(lines) == 1000 * 3 // 12 - 1  # every 4th schema, the last one excepted


def test_at_verbosity_2_a_line_after_each_schema() -> None:
    lines = lines_of(3, 2, 5.0, failed=frozenset({2}))

    assert lines == [
        "Progress: 1/3 schemas, 0 failed, about 10s left",
        "Progress: 2/3 schemas, 1 failed, about 5s left",
        "Progress: 3/3 schemas, 1 failed",
    ]


def test_schemas_done_before_the_run_count_but_do_not_set_the_pace() -> None:
    lines = lines_of(10, 2, 4.0, known=6)

    assert lines[0] == "Progress: 7/10 schemas, 0 failed, about 12s left"


@pytest.mark.parametrize(("total", "verbosity"), [(5, 0), (1, 1), (1, 2)])
def test_nothing_at_verbosity_0_or_for_one_schema(total: int, verbosity: int) -> None:
    assert lines_of(total, verbosity, 1.0) == []


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (42, "42s"), (192, "3m12s"), (7500, "2h05m")]
)
def test_durations_read_as_a_clock(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[OutputWrapper, int]]:
    """A real terminal (a pty) 90 columns wide: its writing end and the reading end's fd."""
    monkeypatch.setenv("COLUMNS", "90")
    main, secondary = pty.openpty()
    with open(secondary, "w") as tty:
        yield OutputWrapper(tty), main
    os.close(main)


def test_on_a_terminal_a_bar_is_redrawn_in_place_below_the_other_lines(
    terminal: tuple[OutputWrapper, int],
) -> None:
    out, main = terminal
    clock = Clock()
    progress = Progress(out, 4, 1, clock=clock)

    for schema in ("t00", "t01", "t02", "t03"):
        clock.now += 1
        with progress.above():
            out.write(f"[{schema}] done")
        progress.advance(schema == "t01")
    progress.finish()
    out.write("Summary: 3 done, 1 failed.")

    # The terminal turns "\n" into "\r\n".
    shown = read_terminal(main, until="Summary: 3 done, 1 failed.\n")
    clear = "\r\x1b[K"
    assert shown == (
        "[t00] done\n"
        "\r[#######.......................]  25% 1/4 schemas, 0 failed, about 3s left\x1b[K"
        f"{clear}[t01] done\n"
        "\r[###############...............]  50% 2/4 schemas, 1 failed, about 2s left\x1b[K"
        f"{clear}[t02] done\n"
        "\r[######################........]  75% 3/4 schemas, 1 failed, about 1s left\x1b[K"
        f"{clear}[t03] done\n"
        "\r[##############################] 100% 4/4 schemas, 1 failed\x1b[K\n"
        "Summary: 3 done, 1 failed.\n"
    )


def test_on_a_terminal_the_bar_is_redrawn_at_most_every_tenth_of_a_second(
    terminal: tuple[OutputWrapper, int],
) -> None:
    out, main = terminal
    clock = Clock()
    progress = Progress(out, 50, 1, clock=clock)

    for _ in range(50):
        clock.now += 1 / 32  # exact in binary: four schemas take 0.125 s
        progress.advance(False)
    progress.finish()

    shown = read_terminal(main, until="50/50 schemas, 0 failed\x1b[K\n")
    # The first, every fourth after it, and the last.
    assert [draw.split("%")[1].split(",")[0] for draw in shown.split("\r")[1:]] == [
        f" {done}/50 schemas" for done in [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 50]
    ]
