"""Named registries, like timm's and pyiqa's: quality heads, partner strategies, dataset kinds, workflow stages.

A ``Registry`` is a read-only mapping from name to object that refuses to register a name twice and names the
known entries when asked for an unknown one. It imports nothing from ``qfm_iqm``, so any module can hold one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """A name a registry does not hold; the message lists those it does."""

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError would quote the message


class Registry(Mapping[str, T]):
    """Objects of one ``kind`` ("head", "stage", ...) by name, in the order they were registered."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` as ``name``; a name already registered is an error naming the first entry."""
        if name in self._entries:
            first = self._entries[name]
            where = f"{getattr(first, '__module__', '?')}.{getattr(first, '__qualname__', type(first).__qualname__)}"
            raise ValueError(f"{self.kind} {name!r} is already registered (by {where})")
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object as ``name`` and return it unchanged."""
        return lambda obj: self.add(name, obj)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; known: {self.names()}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
