"""The conversion plan: the weight type every tensor gets and the projected output size. Pure.

The engine's ``convert`` (``src/convert.cpp``) decides each tensor's type like this, and so does
:func:`make_plan`, so a plan is what the engine will write, byte for byte:

1. the first rule whose regex is *found* in the tensor name (``std::regex_search``) gives the
   wanted type, else the ``--type``;
2. the tensor gets the wanted type only if ``ModelLoader::tensor_should_be_converted`` allows it
   (:func:`engine_keeps`): never biases, ``.scale``, embeddings and a few input/output layers, and
   never a quantized type when the innermost dimension is not a multiple of the type's block
   (which is why 3×3 and 1×1 conv kernels always stay as they are);
3. otherwise it keeps the type it was read as (F64 → f32, F8 → f16, I64 → i32).

The output is a GGUF file with no key/value pairs, tensors in 32-byte aligned slots.
Quantization types come from the engine (:class:`TypeTable`, built in the engine process),
never from a list written here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sdcpp_service.convert.mirror import READ_AS, engine_drops, engine_keeps
from sdcpp_service.errors import InvalidRequest, UnknownName, UnsupportedModel

GGUF_ALIGNMENT = 32


@dataclass(frozen=True)
class QType:
    """One ggml weight type as the engine describes it."""

    name: str  # lower-case, as users type it: "q4_k"
    engine_name: str  # the engine's own spelling, used in rule strings: "q4_K"
    id: int
    block_size: int
    type_size: int
    quantized: bool
    writable: bool  # the engine can convert weights to it

    def nbytes(self, numel: int) -> int:
        return numel // self.block_size * self.type_size


@dataclass(frozen=True)
class TypeTable:
    """The engine's weight types (see ``sdcpp_service.convert._engine.engine_types``)."""

    types: tuple[QType, ...]

    def get(self, name: str) -> QType | None:
        key = name.strip().lower()
        for t in self.types:
            if t.name == key:
                return t
        return None

    def writable(self) -> list[str]:
        return [t.name for t in self.types if t.writable]

    def require(self, name: str, field: str = "type") -> QType:
        """A type the engine can write, or :class:`UnknownName` listing those it can."""
        t = self.get(name)
        if t is None or not t.writable:
            raise UnknownName(field, name, self.writable())
        return t

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self.types]

    @classmethod
    def from_json(cls, rows: Iterable[Mapping[str, Any]]) -> TypeTable:
        return cls(tuple(QType(**dict(r)) for r in rows))


@dataclass(frozen=True)
class SourceTensor:
    """A tensor as a header announces it: name (with any prefix), PyTorch shape, dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def ne(self) -> tuple[int, ...]:
        """ggml's dims, innermost first (5-D tensors folded to 4-D as the engine does)."""
        shape = list(self.shape) or [1]
        if len(shape) == 5:
            shape = [shape[0] * shape[1], *shape[2:]]
        return tuple(reversed(shape))

    @property
    def vector(self) -> bool:
        return sum(1 for d in self.shape if d > 1) <= 1


@dataclass(frozen=True)
class Rule:
    """``pattern`` (a regex searched in tensor names, as the engine does) → weight ``type``."""

    pattern: str
    type: str
    why: str = ""
    origin: str = "user"  # "user" | "default"

    def spec(self) -> str:
        return f"{self.pattern}={self.type}"


def parse_rule(text: str, table: TypeTable) -> Rule:
    """``'REGEX=TYPE'`` → :class:`Rule`; checked here because the engine ignores bad rules."""
    pattern, sep, type_name = text.partition("=")
    if not sep or not pattern:
        raise InvalidRequest("rule", f"'{text}' is not REGEX=TYPE")
    if "," in pattern:
        raise InvalidRequest("rule", f"'{text}': the engine splits rules at commas")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidRequest("rule", f"'{text}': bad regex ({exc})") from None
    qtype = table.require(type_name.strip(), "rule type")
    return Rule(pattern, qtype.name)


@dataclass(frozen=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]
    source: str
    target: str
    source_bytes: int
    target_bytes: int
    reason: str


@dataclass(frozen=True)
class Plan:
    """What a conversion will write; ``output_bytes`` is the exact GGUF file size."""

    qtype: str
    rules: tuple[Rule, ...]
    tensors: tuple[TensorPlan, ...]
    dropped: tuple[str, ...]
    output_bytes: int
    notes: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: likely mistakes, said on stderr (a ``--rule`` that matches no tensor, an output that is
    #: no smaller than its input)
    warnings: tuple[str, ...] = ()

    @property
    def source_bytes(self) -> int:
        return sum(t.source_bytes for t in self.tensors)

    def engine_rules(self, table: TypeTable) -> str:
        """The rules as the engine's ``tensor_type_rules`` string (engine type spellings)."""
        return ",".join(f"{r.pattern}={table.require(r.type).engine_name}" for r in self.rules)

    def summary(self) -> list[tuple[str, str, int, int]]:
        """``(source type, target type, tensors, output bytes)``, largest first."""
        groups: dict[tuple[str, str], list[int]] = {}
        for t in self.tensors:
            g = groups.setdefault((t.source, t.target), [0, 0])
            g[0] += 1
            g[1] += t.target_bytes
        rows = [(s, d, n, b) for (s, d), (n, b) in groups.items()]
        return sorted(rows, key=lambda r: -r[3])

    def types(self) -> dict[str, str]:
        return {t.name: t.target for t in self.tensors}

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.qtype,
            "rules": [asdict(r) for r in self.rules],
            "output_bytes": self.output_bytes,
            "source_bytes": self.source_bytes,
            "summary": [
                {"from": s, "to": d, "tensors": n, "bytes": b} for s, d, n, b in self.summary()
            ],
            "tensors": [{**asdict(t), "shape": list(t.shape)} for t in self.tensors],
            "dropped": list(self.dropped),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            **dict(self.meta),
        }


def _blocked(t: SourceTensor, q: QType) -> bool:
    return q.quantized and t.ne[0] % q.block_size != 0


def read_as(t: SourceTensor, table: TypeTable) -> QType:
    """The type the engine holds ``t`` as after reading it."""
    name = READ_AS.get(t.dtype.upper()) or t.dtype.lower()
    q = table.get(name)
    if q is None:
        raise UnsupportedModel(t.name, f"dtype {t.dtype} cannot be read by the engine")
    return q


def _gguf_size(rows: Sequence[tuple[SourceTensor, QType]]) -> int:
    """Bytes of a GGUF v3 file with no key/values holding ``rows`` (``gguf_write_out``)."""
    header = 4 + 4 + 8 + 8
    data = 0
    for t, q in rows:
        ne = list(t.ne)
        while len(ne) > 1 and ne[-1] == 1:
            ne.pop()
        header += 8 + len(t.name.encode("utf-8")) + 4 + 8 * len(ne) + 4 + 8
        data += _align(q.nbytes(t.numel))
    return _align(header) + data


def _align(n: int) -> int:
    return (n + GGUF_ALIGNMENT - 1) // GGUF_ALIGNMENT * GGUF_ALIGNMENT


def engine_tensors(tensors: Iterable[SourceTensor]) -> tuple[list[SourceTensor], list[str]]:
    """Split into the tensors the engine converts and the names it drops on reading."""
    kept: list[SourceTensor] = []
    dropped: list[str] = []
    for t in tensors:
        if engine_drops(t.name, t.dtype):
            dropped.append(t.name)
        else:
            kept.append(t)
    return kept, dropped


def make_plan(
    tensors: Iterable[SourceTensor],
    qtype: str,
    table: TypeTable,
    rules: Sequence[Rule] = (),
    notes: Sequence[str] = (),
    meta: Mapping[str, Any] | None = None,
) -> Plan:
    """Evaluate ``rules`` (first match wins) then the engine's own limits, tensor by tensor."""
    target = table.require(qtype)
    compiled = [(r, re.compile(r.pattern), table.require(r.type, "rule type")) for r in rules]
    kept, dropped = engine_tensors(tensors)
    rows: list[tuple[SourceTensor, QType]] = []
    plans: list[TensorPlan] = []
    for t in kept:
        src = read_as(t, table)
        wanted, reason = target, "type"
        for i, (rule, rx, q) in enumerate(compiled, 1):
            if rx.search(t.name):
                wanted = q
                reason = f"rule {i} ({rule.origin}" + (f": {rule.why})" if rule.why else ")")
                break
        keeps = engine_keeps(t.name)
        if keeps is not None:
            out, reason = src, f"engine keeps: {keeps}"
        elif _blocked(t, wanted):
            out = src
            reason = f"engine keeps: row of {t.ne[0]} not a multiple of {wanted.name} block {wanted.block_size}"
        else:
            out = wanted
        rows.append((t, out))
        plans.append(
            TensorPlan(
                t.name,
                t.shape,
                src.name,
                out.name,
                src.nbytes(t.numel),
                out.nbytes(t.numel),
                reason,
            )
        )
    warnings = [
        f"rule {i} '{rule.spec()}' matches no tensor of this file (names look like "
        f"{', '.join(t.name for t in kept[:2])}); check the pattern"
        for i, (rule, rx, _) in enumerate(compiled, 1)
        if rule.origin == "user" and kept and not any(rx.search(t.name) for t in kept)
    ]
    return Plan(
        qtype=target.name,
        rules=tuple(rules),
        tensors=tuple(plans),
        dropped=tuple(dropped),
        output_bytes=_gguf_size(rows),
        notes=tuple(notes),
        meta=dict(meta or {}),
        warnings=tuple(warnings),
    )
