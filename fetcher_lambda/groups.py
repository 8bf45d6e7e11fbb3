"""Symbol groups: one schedule per group, each invocation fetching its own slice of ``SYMBOLS``.

The template's ``FetcherGroups`` parameter creates one schedule per group, whose invocation input is
``{"group": I, "groups": G}``. Group I fetches the I-th of G contiguous, near-equal slices of
``SYMBOLS`` with 1/G of ``AV_CALLS_PER_MINUTE``: the budget belongs to the API key, which every
group uses at the same time. An input without these keys (a manual run, the default schedule
event) is the whole list with the whole budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .config import ConfigError


@dataclass(frozen=True)
class Group:
    number: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.number <= self.count:
            raise ConfigError(f"group {self.number} of {self.count}: need 1 <= group <= groups")

    @classmethod
    def from_event(cls, event: Any) -> "Group":
        """The group an invocation input names; raises ``ConfigError`` when it names one badly."""
        if not isinstance(event, dict) or not {"group", "groups"} & set(event):
            return cls()
        number, count = event.get("group"), event.get("groups")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (number, count)) \
                or not 1 <= number <= count:
            raise ConfigError('the invocation input must be {"group": I, "groups": G} with integers '
                              f"1 <= I <= G; got group={number!r}, groups={count!r}")
        return cls(number, count)

    def select(self, symbols: Sequence[str]) -> tuple[str, ...]:
        """This group's slice of ``symbols`` (every symbol is in exactly one group's slice)."""
        total = len(symbols)
        return tuple(symbols[(self.number - 1) * total // self.count:self.number * total // self.count])

    def share(self, calls_per_minute: float) -> float:
        """This group's part of the key's calls-per-minute budget."""
        return calls_per_minute / self.count

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"
