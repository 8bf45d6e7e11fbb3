"""The flat state of a symbol's analysis: runs of float slots in one shared list.

An indicator (``indicators``, ``patterns``) keeps its state in consecutive slots of one list of
floats that all the indicators of a symbol share, and updates them in place: the analysis of a
symbol is one flat numeric layout, its snapshot a copy of that list and its restore a copy back.
None travels as NaN, counts as floats.

Pure: no Flink, no I/O.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from itertools import islice
from struct import Struct

NAN = math.nan


@lru_cache(maxsize=16)
def _packer(count: int) -> Callable[..., bytes]:
    return Struct(f"={count}d").pack


def packed(values: Sequence[float]) -> bytes:
    """``values`` as float64 bytes in native order, as ``unpacked`` reads them back: how a state is
    stored (``struct`` packs a list several times faster than ``array`` converts one)."""
    return _packer(len(values))(*values)


def unpacked(data: bytes) -> list[float]:
    """The floats that ``packed`` gave ``data``."""
    return array("d", data).tolist()


class IncompatibleState(ValueError):
    """A stored state this code cannot continue: ``reason`` is ``layout_version`` (written by
    another layout), ``periods_changed`` (taken under other indicator periods) or ``malformed``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def snapshot_body(values: list[float], versions: tuple[float, ...], header: Sequence[float],
                  period_fields: Sequence[str], what: str) -> list[float]:
    """The values after the header of ``values``, a snapshot of one of ``versions`` whose header
    (version, then the periods named ``period_fields``) must match ``header``'s periods; raises
    ``IncompatibleState`` naming ``what`` otherwise."""
    if not values:
        raise IncompatibleState("malformed", f"{what} is empty")
    version = values[0]
    if version not in versions:
        raise IncompatibleState("layout_version", f"{what} version {version!r}, expected {header[0]!r}")
    periods = values[1:len(header)]
    if periods != list(header[1:]):
        if len(periods) < len(period_fields):
            raise IncompatibleState("malformed", f"{what} is truncated")
        changed = {name: f"{old:g} -> {new:g}" for name, old, new in zip(period_fields, periods, header[1:])
                   if old != new}
        raise IncompatibleState("periods_changed", f"{what}: periods changed: {changed}")
    return values[len(header):]


def fill(slots: list[float], start: int, body: list[float], what: str) -> None:
    """``slots`` from ``start`` on set to ``body``; ``IncompatibleState`` if its length differs."""
    expected = len(slots) - start
    if len(body) != expected:
        raise IncompatibleState("malformed", f"{what} is truncated" if len(body) < expected
                                else f"{what} has trailing values")
    slots[start:] = body


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
