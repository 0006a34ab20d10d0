"""Lazy registries: names map to "module:object" strings, so listing imports nothing heavy.

    fypbench ls methods
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from fypbench.errors import did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:object"
    summary: str

    def load(self) -> Any:
        module_name, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attr)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, summary: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, target, summary)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise did_you_mean(name, self._entries, self.kind) from None

    def load(self, name: str) -> Any:
        return self.get(name).load()

    def __contains__(self, name: str) -> bool:
        return name in self._entries


METHODS = Registry("method")
METHODS.register("reference", "fypbench.methods.reference:ReferenceGenerator",
                 "Ground-truth renders of the mini world (ceiling row; positive control of the metrics)")

WORLDS = Registry("world")
WORLDS.register("mini", "fypbench.world.mini.world:MiniWorld",
                "Offline CPU world: mannequin renders of mocap + procedural motion, tiny in-house models")
