"""Default per-tensor type rules: one ordered, declarative table you can read top to bottom.

They apply only when the target type is quantized (with f16/bf16/f32 every tensor the engine
converts simply gets that type). Your ``--rule REGEX=TYPE`` rules always come first, and the
first rule that matches a tensor wins, so any row below can be overridden, e.g.
``--rule 'first_stage_model=q8_0'`` quantizes a checkpoint's VAE after all.

A row selects tensors by a name regex (``pattern``) or by shape (``select``: ``vector`` = at most
one dimension above 1, ``small`` = fewer than :data:`SMALL` elements). The engine's rules are
name regexes only, so shape rows are compiled, per file, into a short regex of the names they
select (see :func:`name_regex`); the plan shows the result.

The engine itself already keeps biases, embeddings, 3×3/1×1 conv kernels and the Flux/MMDiT
input and output layers (``tensor_should_be_converted``); rows here do not repeat that.
The ``vector``/``small``/``modulation`` rows follow city96's ComfyUI-GGUF ``tools/convert.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sdcpp_service.convert.mirror import engine_keeps
from sdcpp_service.convert.plan import Rule, SourceTensor, TypeTable, engine_tensors

#: Tensors with fewer elements than this stay f32 (as in ComfyUI-GGUF).
SMALL = 1024


@dataclass(frozen=True)
class DefaultRule:
    type: str
    why: str
    pattern: str | None = None
    select: str | None = None  # "vector" | "small"
    slots: tuple[str, ...] = ()  # loader slots it applies to ("model", "vae", …); () = all
    archs: tuple[str, ...] = ()  # arch name prefixes ("wan" matches "wan2.1"); () = all

    def applies(self, slot: str, arch: str) -> bool:
        if self.slots and slot not in self.slots:
            return False
        return not self.archs or any(arch.startswith(a) for a in self.archs)


DEFAULT_RULES: tuple[DefaultRule, ...] = (
    DefaultRule(
        "f16",
        "a checkpoint's VAE stays f16: quantized VAEs show colour noise",
        pattern=r"^(?:first_stage_model|vae|tae)\.",
        slots=("model",),
    ),
    DefaultRule(
        "f16",
        "a VAE file stays f16 unless a --rule asks for less",
        pattern=".",
        slots=("vae", "taesd"),
    ),
    DefaultRule(
        "f32",
        "Wan modulation parameters are used in f32",
        pattern=r"\.modulation$",
        archs=("wan",),
    ),
    DefaultRule("f32", "vectors (norm scales): tiny, used in f32 at runtime", select="vector"),
    DefaultRule("f32", f"fewer than {SMALL} elements: nothing to gain", select="small"),
)


def _selects(row: DefaultRule, t: SourceTensor) -> bool:
    if row.select == "vector":
        return t.vector
    if row.select == "small":
        return t.numel < SMALL
    raise ValueError(f"unknown selector {row.select!r}")


def default_rules(
    slot: str,
    arch: str,
    qtype: str,
    tensors: Sequence[SourceTensor],
    table: TypeTable,
    rows: Sequence[DefaultRule] = DEFAULT_RULES,
) -> list[Rule]:
    """The table's rows for this file, shape rows compiled to name regexes."""
    target = table.require(qtype)
    if not target.quantized:
        return []
    kept, _ = engine_tensors(tensors)
    # Tensors a rule could change: the engine would convert them to *some* type.
    open_ = [t for t in kept if engine_keeps(t.name) is None]
    out: list[Rule] = []
    claimed: set[str] = set()  # names an earlier default row already decides
    for row in rows:
        if not row.applies(slot, arch):
            continue
        if row.pattern is not None:
            rx = re.compile(row.pattern)
            hits = [t.name for t in open_ if rx.search(t.name)]
            if hits:
                out.append(Rule(row.pattern, row.type, row.why, "default"))
                claimed.update(hits)
            continue
        # Also tensors the block size keeps as they are: matching them too (→ f32, lossless)
        # leaves fewer names to tell apart, so the regex stays short.
        selected = [t.name for t in open_ if t.name not in claimed and _selects(row, t)]
        chosen = set(selected)
        # Names an earlier row decides may match too: the first matching rule wins.
        others = [t.name for t in open_ if t.name not in chosen and t.name not in claimed]
        pattern = name_regex(selected, others)
        if pattern:
            out.append(Rule(pattern, row.type, row.why, "default"))
            claimed.update(selected)
    return out


def name_regex(selected: Iterable[str], others: Iterable[str]) -> str | None:
    """A short regex matching every ``selected`` name and none of ``others``.

    Each name is reduced to its shortest dotted suffix that ends no other name, so a rule on
    hundreds of norm weights compiles to a dozen alternatives (the engine compiles every rule
    once per tensor, so short matters). None when nothing is selected.
    """
    chosen = sorted(set(selected))
    if not chosen:
        return None
    taken: set[str] = set()
    for name in others:
        parts = name.split(".")
        for i in range(len(parts)):
            taken.add(".".join(parts[i:]))
    suffixes: set[str] = set()
    for name in chosen:
        parts = name.split(".")
        for i in range(len(parts) - 1, -1, -1):
            suffix = ".".join(parts[i:])
            if suffix not in taken:
                suffixes.add(suffix)
                break
        else:  # a selected name that is also a suffix of another name: match it whole
            suffixes.add("^" + name)
    alts = sorted(
        re.escape(s) if not s.startswith("^") else "^" + re.escape(s[1:]) for s in suffixes
    )
    plain = [a for a in alts if not a.startswith("^")]
    anchored = [a[1:] for a in alts if a.startswith("^")]
    parts_rx: list[str] = []
    if plain:
        parts_rx.append(r"(?:^|\.)(?:" + "|".join(plain) + ")$")
    if anchored:
        parts_rx.append("^(?:" + "|".join(anchored) + ")$")
    return "|".join(parts_rx)
