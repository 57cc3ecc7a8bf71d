"""Pure detection: tensor names and shapes → what the file is and where the engine takes it.

No I/O here: :func:`detect` takes a mapping of names to shapes (or :class:`TensorInfo`) and
walks the ordered tables in :mod:`~sdcpp_service.models.archs` and
:mod:`~sdcpp_service.models.components`. Names are first split into components by their
prefix (``model.diffusion_model.``, ``first_stage_model.``, ``conditioner.embedders.1.``…), so
LDM checkpoints, diffusers folders, ComfyUI/kohya files and bare DiT files are all read alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sdcpp_service.models import components as C
from sdcpp_service.models.archs import (
    CONTROL_RULES,
    GROUP_PREFIXES,
    MODEL_RULES,
    UNET_ARCHES,
    UNET_ONLY_REASON,
    Cond,
    Defaults,
    Dim,
    Has,
    Lacks,
    MaxIndex,
    Need,
    Rule,
)
from sdcpp_service.models.headers import TensorInfo

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Detection:
    """What the weights say. ``component`` is the load-plan kind a component file fills."""

    kind: str
    arch: str | None
    variant: str | None = None
    slot: str | None = None
    component: str | None = None
    contains: tuple[str, ...] = ()
    needs: tuple[Need, ...] = ()
    supported: bool = True
    reason: str | None = None
    defaults: Defaults | None = None
    details: Mapping[str, str | int] = field(default_factory=dict)


def _looks_like_lora(text: str) -> bool:
    if "lora" not in text and "hada_" not in text and "lokr_" not in text:
        return False  # the common case, decided by three substring scans
    pattern = "(?:" + "|".join(re.escape(sfx) for sfx in C.LORA_SUFFIXES) + ")$"
    return re.search(pattern, text, re.MULTILINE) is not None


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


class View:
    """The names of one component, searched with the table's key syntax.

    Names are joined into one newline-separated text and each key becomes one anchored regex
    search over it (C speed, no per-name Python loop); results are memoised per key.
    """

    def __init__(self, shapes: Mapping[str, Shape]) -> None:
        self.shapes = shapes
        self.text = "\n".join(shapes)
        self._found: dict[str, str | None] = {}

    def _name(self, alt: str) -> str | None:
        """The first name matching one alternative of a key, or None."""
        if alt in self._found:
            return self._found[alt]
        text, found, n = self.text, None, len(alt)
        if alt.endswith("."):  # a block prefix: must start a name
            i = 0 if text.startswith(alt) else text.find("\n" + alt) + 1
            if i > 0 or text.startswith(alt):
                found = text[i : _line_end(text, i)]
        else:  # a tail: must end a name at a dot boundary
            i = text.find(alt)
            while i >= 0:
                end = i + n
                if (end == len(text) or text[end] == "\n") and (i == 0 or text[i - 1] in ".\n"):
                    found = text[text.rfind("\n", 0, i) + 1 : end]
                    break
                i = text.find(alt, i + 1)
        self._found[alt] = found
        return found

    def has(self, key: str) -> bool:
        return any(self._name(alt) is not None for alt in key.split("|"))

    def shape(self, key: str) -> Shape | None:
        for alt in key.split("|"):
            name = self._name(alt)
            if name is not None:
                return self.shapes[name]
        return None

    def dim(self, key: str, axis: int) -> int | None:
        shape = self.shape(key)
        if shape is None or not -len(shape) <= axis < len(shape):
            return None
        return shape[axis]

    def max_index(self, block: str) -> int:
        found = re.findall(f"^{re.escape(block)}\\.(\\d+)\\.", self.text, re.MULTILINE)
        return max((int(i) for i in found), default=-1)

    def holds(self, cond: Cond) -> bool:
        if isinstance(cond, Has):
            return self.has(cond.key)
        if isinstance(cond, Lacks):
            return not self.has(cond.key)
        if isinstance(cond, Dim):
            return self.dim(cond.key, cond.axis) in cond.values
        if isinstance(cond, MaxIndex):
            return cond.low <= self.max_index(cond.block) <= cond.high
        raise TypeError(cond)  # pragma: no cover

    def first(self, rules: Iterable[Rule]) -> Rule | None:
        for rule in rules:
            if all(self.holds(c) for c in rule.when):
                return rule
        return None


def split_groups(shapes: Mapping[str, Shape]) -> dict[str, tuple[str, dict[str, Shape]]]:
    """Names → {prefix: (group type, {name without prefix: shape})}; bare names under ``""``."""
    by_head: dict[str, list[tuple[str, str]]] = {}
    for prefix, gtype in GROUP_PREFIXES:
        by_head.setdefault(prefix.partition(".")[0], []).append((prefix, gtype))
    names_by_head: dict[str, list[str]] = {}
    for name in shapes:
        names_by_head.setdefault(name.partition(".")[0], []).append(name)
    groups: dict[str, tuple[str, dict[str, Shape]]] = {}
    bare: dict[str, Shape] = {}
    for head, names in names_by_head.items():
        cands = by_head.get(head)
        if cands is None:  # the common case for bare files: no per-name work
            bare.update((n, shapes[n]) for n in names)
            continue
        for name in names:
            for cand, ctype in cands:
                if name.startswith(cand):
                    groups.setdefault(cand, (ctype, {}))[1][name[len(cand) :]] = shapes[name]
                    break
            else:
                bare[name] = shapes[name]
    if bare:
        groups[""] = ("bare", bare)
    return groups


def _variant(rule: Rule, view: View) -> str | None:
    if rule.variant is None or "{size}" not in rule.variant:
        return rule.variant
    size = None
    if rule.size is not None:
        dim = view.dim(rule.size.key, rule.size.axis)
        size = None if dim is None else rule.size.table.get(dim)
    text = rule.variant.replace("{size}", size or "").strip("-")
    return text or None


def _needs(rule: Rule, view: View) -> tuple[Need, ...]:
    needs = list(rule.needs)
    if rule.llm is not None:
        width = view.dim(rule.llm.key, rule.llm.axis)
        size = None if width is None else rule.llm.sizes.get(width)
        needs.append(Need("llm", rule.llm.family, size))
    return tuple(needs)


def _component(rule: Rule, view: View, **extra: str | int) -> Detection:
    slot = C.COMPONENT_SLOTS.get(rule.component or rule.kind)
    return Detection(
        rule.kind, rule.arch, _variant(rule, view), slot, rule.component or rule.kind,
        supported=rule.supported, reason=rule.reason, details={**rule.details, **extra},
    )  # fmt: skip


def _classify(gtype: str, shapes: dict[str, Shape]) -> str | None:
    """The component kind of one non-diffusion group inside a checkpoint."""
    table = C.VAE_RULES if gtype == "vae" else C.TE_RULES if gtype == "te" else ()
    rule = View(shapes).first(table)
    return None if rule is None else rule.component


def _model(rule: Rule, view: View, groups: dict[str, tuple[str, dict[str, Shape]]]) -> Detection:
    contains = sorted(
        {c for p, (g, s) in groups.items() if g in ("vae", "te") and (c := _classify(g, s))}
    )
    needs = tuple(n for n in _needs(rule, view) if n.component not in contains)
    slot, supported, reason = rule.slot, rule.supported, rule.reason
    diffusion_prefixes = {p for p, (g, _) in groups.items() if g == "diffusion"}
    extras = any(g != "diffusion" for g, _ in groups.values())
    if rule.arch in UNET_ARCHES and supported and not any(c.startswith("clip") for c in contains):
        slot, supported, reason = None, False, UNET_ONLY_REASON
    elif rule.arch not in UNET_ARCHES and extras:
        if diffusion_prefixes == {"model.diffusion_model."}:
            slot = "model_path"  # an all-in-one checkpoint in the engine's own naming
        elif supported:
            supported = False
            reason = "the diffusion model and its other components use mixed naming"
    return Detection(
        "model", rule.arch, _variant(rule, view), slot, None, tuple(contains), needs,
        supported, reason, rule.defaults, dict(rule.details),
    )  # fmt: skip


def _lora(shapes: Mapping[str, Shape]) -> Detection:
    names = list(shapes)
    text = "\n".join(names)
    style = next((s for marker, s in C.LORA_STYLES if marker in text), "lora")
    family = next(
        (f for rx, f in C.LORA_FAMILIES if re.search(rx, text, re.MULTILINE) is not None), None
    )
    downs = [n for n in names if n.endswith(C.LORA_DOWN)]
    te2 = re.search(r"lora_te2_|text_encoder_2|^te2[._]", text, re.MULTILINE) is not None
    if family == "unet":
        ctx = [
            shapes[n][1] for n in downs if re.search(r"attn2[._]to[._]k", n) and len(shapes[n]) > 1
        ]
        family = C.LORA_UNET_CTX.get(ctx[0]) if ctx else ("sdxl" if te2 else "te")
    if family == "te":
        width = [shapes[n][1] for n in downs if re.search(r"mlp[._]fc1|self[._]attn[._]q", n)]
        family = "sdxl" if te2 else (C.LORA_TE_WIDTH.get(width[0]) if width else None)
    details: dict[str, str | int] = {"style": style}
    ranks = {shapes[n][0] for n in downs if shapes[n]}
    if ranks:
        details["rank"] = max(ranks)
    reason = None if family else "a LoRA, but its base model could not be told from its names"
    return Detection("lora", family, None, "lora", "lora", reason=reason, details=details)


def _embedding(shapes: Mapping[str, Shape]) -> Detection | None:
    if not 0 < len(shapes) <= 4:
        return None
    widths: set[int] = set()
    for name, shape in shapes.items():
        if name not in C.EMBEDDING_NAMES and not name.startswith("string_to_param."):
            return None
        if not 1 <= len(shape) <= 2:
            return None
        widths.add(shape[-1])
    family = C.EMBEDDING_WIDTHS.get(frozenset(widths))
    if family is None:
        return None
    vectors = max(shape[0] if len(shape) == 2 else 1 for shape in shapes.values())
    return Detection(
        "embedding", family, None, "embedding", "embedding", details={"vectors": vectors}
    )


def detect(tensors: Mapping[str, TensorInfo] | Mapping[str, Shape]) -> Detection | None:
    """Decide what a file is from its names and shapes; None when nothing matches."""
    shapes: dict[str, Shape] = {
        n: (v.shape if isinstance(v, TensorInfo) else tuple(v)) for n, v in tensors.items()
    }
    if not shapes:
        return None
    full = View(shapes)
    if _looks_like_lora(full.text):
        rule = full.first(C.PHOTOMAKER_RULES)  # PhotoMaker files carry a LoRA too
        return _component(rule, full) if rule else _lora(shapes)
    groups = split_groups(shapes)
    found = _embedding(shapes)
    if found is not None:
        return found
    merged = {n: s for g, d in groups.values() if g == "diffusion" for n, s in d.items()}
    if merged:
        view = View(merged)
        rule = view.first(MODEL_RULES)
        if rule is not None:
            return _model(rule, view, groups)
    candidates = [View(d) for g, d in groups.values() if g == "control"]
    if len(groups) == 1 and "" not in groups:
        candidates.append(View(next(iter(groups.values()))[1]))
    candidates.append(full)
    for view in candidates:
        for table in (CONTROL_RULES, MODEL_RULES, C.VAE_RULES, C.TE_RULES, C.OTHER_RULES):
            rule = view.first(table)
            if rule is None:
                continue
            if rule.kind == "model":
                return _model(rule, view, {"": ("diffusion", dict(view.shapes))})
            return _component(rule, view)
    return None
