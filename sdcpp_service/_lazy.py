"""Module-level ``__getattr__`` for packages whose members are imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_members(package: str, members: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` serving ``members`` (name → module) for ``package``."""

    def __getattr__(name: str) -> Any:
        if name in members:
            return getattr(importlib.import_module(members[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
