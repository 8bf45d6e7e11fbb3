"""The flat state of a symbol's analysis: runs of float slots in one shared list.

An indicator (``indicators``, ``patterns``) keeps its state in consecutive slots of one list of
floats that all the indicators of a symbol share, and updates them in place: the analysis of a
symbol is one flat numeric layout, its snapshot a copy of that list and its restore a copy back.
None travels as NaN, counts as floats.

Pure: no Flink, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice

NAN = math.nan


def encode(value: float | None) -> float:
    return NAN if value is None else value


def decode(value: float) -> float | None:
    return None if value != value else value


class Slots:
    """A run of consecutive slots in a flat state list (``s``, from offset ``o``), appended to it
    when built; a new list when none is given. Indicators built on one list share it: restoring
    that list in place (``s[:] = snapshot``) restores them all."""

    __slots__ = ("s", "o")

    def __init__(self, state: list[float] | None, initial: list[float]) -> None:
        self.s = state if state is not None else []
        self.o = len(self.s)
        self.s += initial


def check_count(value: float, limit: float, what: str) -> int:
    """A stored count as an int; ValueError unless it is a whole number in 0..limit."""
    if not 0 <= value <= limit or value != int(value):  # NaN fails the range test
        raise ValueError(f"{what} count {value!r} is not in 0..{limit:g}")
    return int(value)


def widen_window(it: Iterator[float], size: int) -> list[float]:
    """A length-prefixed window of an older snapshot (its count, then that many values) as a
    ``History``'s slots: the count, then the values NaN-padded at the front to ``size``."""
    count = check_count(next(it), size, "window")
    values = list(islice(it, count))
    if len(values) != count:
        raise ValueError("snapshot is truncated")
    return [float(count), *([NAN] * (size - count)), *values]


class History(Slots):
    """The latest ``size`` values of a series in ``size + 1`` slots: how many were seen (up to
    ``size``), then the values, oldest first and NaN-padded at the front. Several indicators can
    read one history: its owner appends each value once, before updating them."""

    __slots__ = ("size", "end")

    def __init__(self, size: int, state: list[float] | None = None) -> None:
        super().__init__(state, [0.0] + [NAN] * size)
        self.size = size
        self.end = self.o + 1 + size  # one past the newest value

    def append(self, value: float) -> None:
        s, o = self.s, self.o
        # Drop the oldest and insert the newest: two moves of the list's pointers, cheaper than
        # copying the window through a slice.
        del s[o + 1]
        s.insert(self.end - 1, value)
        if s[o] < self.size:
            s[o] += 1.0

    def __len__(self) -> int:
        return int(self.s[self.o])

    def last(self, count: int) -> list[float]:
        """The latest ``count`` values (``count`` <= len), oldest first."""
        return self.s[self.end - count:self.end]

    def check(self) -> None:
        """ValueError unless the stored count fits and every kept value is a number."""
        count = check_count(self.s[self.o], self.size, "window")
        if any(v != v for v in self.last(count)):
            raise ValueError("window has a missing value")


def history_of(period: int, closes: History | None, state: list[float] | None) -> tuple[History, bool]:
    """(the closes an indicator over ``period`` values reads, whether it owns them)."""
    if closes is None:
        return History(period, state), True
    if closes.size < period:
        raise ValueError(f"a history of {closes.size} closes is shorter than the period {period}")
    return closes, False
