"""Plans: what goes in each tensor of a kit file, before any byte is written."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .manifests import load_layout
from .models import FileSpec, Rule
from .pool import DEFAULT_STD


@dataclass(frozen=True)
class Fill:
    kind: str  # "zeros" | "ones" | "normal" | "const" | "array"
    std: float = 0.0  # normal: the standard deviation; const: the value
    centered: bool = False  # normal: each output channel (dim 0) has mean exactly 0
    array: np.ndarray | None = None

    def describe(self) -> str:
        if self.kind == "normal":
            return f"normal({self.std!r},{self.centered})"
        if self.kind == "const":
            return f"const({self.std!r})"
        if self.kind == "array":
            assert self.array is not None
            return f"array({self.array.dtype.str},{hash_bytes(self.array.tobytes())})"
        return self.kind


ZEROS = Fill("zeros")
ONES = Fill("ones")


def normal(std: float) -> Fill:
    return Fill("normal", std=std)


def array(values: np.ndarray) -> Fill:
    return Fill("array", array=np.ascontiguousarray(values))


@dataclass(frozen=True)
class Planned:
    name: str
    shape: tuple[int, ...]
    fill: Fill
    dtype: str | None = None  # overrides the file's dtype for this tensor

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def hash_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]


def fan_in(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if len(shape) > 1 else shape[0]


def _resolve(name: str, shape: tuple[int, ...], init: str, rules: tuple[Rule, ...]) -> Fill:
    for rule in rules:
        if rule.kind == "const" and re.search(rule.pattern, name):
            return Fill("const", std=rule.arg)
    if init == "zeros":
        return ZEROS
    if init == "ones":
        return ONES
    for rule in rules:
        if re.search(rule.pattern, name):
            if rule.kind == "const":
                continue
            if rule.kind == "zero":
                return ZEROS
            if rule.kind == "scale":
                return normal(DEFAULT_STD * rule.arg)
            if rule.kind == "fan_in":
                return normal(rule.arg / math.sqrt(fan_in(shape)))
            if rule.kind == "centered":
                return Fill("normal", std=rule.arg / math.sqrt(fan_in(shape)), centered=True)
            raise ValueError(f"unknown rule kind {rule.kind!r}")
    return normal(DEFAULT_STD)


def plan_file(spec: FileSpec) -> list[Planned]:
    if spec.layout.startswith("derived:"):
        from .derived import DERIVED

        return DERIVED[spec.layout.removeprefix("derived:")]()
    entries = load_layout(spec.layout).tensors(spec.layout_file)
    return [
        Planned(e.name, e.shape, _resolve(e.name, e.shape, e.init, spec.rules)) for e in entries
    ]
