"""Name -> factory registries of the analysis stages, as compressai.registry keeps its models.

Each stage of `analyze` (grounding, masks, ranking) has one `Registry`; backends.py
fills them with the `register` decorator and `analyze` looks the configured name up.
A factory imports its heavy dependencies inside, so registering one costs nothing
when `sdc.analysis` is imported.
"""
from __future__ import annotations

from typing import Callable

from sdc.errors import UsageError

AUTO = "auto"  # every stage's first name: pick a backend from what this machine has


class Registry:
    """Factories of one stage by name, in the order they were registered."""

    def __init__(self, what: str):
        self.what = what  # how errors name a choice of this stage: "analyzer", "masks choice", "ranker"
        self.factories: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        """Decorator: `@REGISTRY.register("name")` above a factory."""
        def add(factory: Callable) -> Callable:
            if name == AUTO or name in self.factories:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self.factories[name] = factory
            return factory
        return add

    def names(self) -> list[str]:
        """"auto", then every registered name (what the config and the CLI accept)."""
        return [AUTO, *self.factories]

    def check(self, name: str) -> None:
        if name != AUTO and name not in self.factories:
            raise UsageError(f"unknown {self.what} {name!r}: expected one of {', '.join(self.names())}")

    def __getitem__(self, name: str) -> Callable:
        return self.factories[name]
