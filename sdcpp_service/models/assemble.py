"""Assembly: a main model plus optional overrides → the full load plan (slot → file).

``plan("flux1-schnell-Q4_0", {}, settings)`` finds the model in the catalog (or takes a path),
then for every component it still needs (a Flux VAE, CLIP-L, T5-XXL…) takes the override if
one was given (checking it fits) or picks a compatible file from the catalog. A component
that cannot be found is a :class:`~sdcpp_service.errors.MissingComponent` naming what was
looked for and the ``sdcpp pull`` command that fetches one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest, MissingComponent, UnsupportedModel
from sdcpp_service.models.archs import Need
from sdcpp_service.models.catalog import Catalog, Entry, scan
from sdcpp_service.models.components import COMPONENT_SLOTS
from sdcpp_service.models.hub import PULL_COMMAND
from sdcpp_service.models.inspect import ModelInfo, inspect

#: Where to fetch a component: need (component, family, variant) → ``REPO FILE`` to pull.
PULL_HINTS: dict[tuple[str, str | None, str | None], str] = {
    ("vae", "flux", None): "black-forest-labs/FLUX.1-schnell ae.safetensors",
    ("vae", "flux2", None): "Comfy-Org/flux2-dev split_files/vae/flux2-vae.safetensors",
    ("vae", "wan2.1", None): "Comfy-Org/Wan_2.1_ComfyUI_repackaged split_files/vae/wan_2.1_vae.safetensors",
    ("vae", "wan2.2", None): "Comfy-Org/Wan_2.2_ComfyUI_Repackaged split_files/vae/wan2.2_vae.safetensors",
    ("clip_l", None, None): "comfyanonymous/flux_text_encoders clip_l.safetensors",
    ("t5xxl", None, None): "comfyanonymous/flux_text_encoders t5xxl_fp16.safetensors",
    ("umt5xxl", None, None): "city96/umt5-xxl-encoder-gguf umt5-xxl-encoder-Q8_0.gguf",
    ("llm", "qwen3", "4b"): "unsloth/Qwen3-4B-Instruct-2507-GGUF Qwen3-4B-Instruct-2507-Q4_K_M.gguf",
    ("llm", "qwen3", "8b"): "unsloth/Qwen3-8B-GGUF Qwen3-8B-Q4_K_M.gguf",
    ("llm", "qwen2.5-vl", "7b"): "unsloth/Qwen2.5-VL-7B-Instruct-GGUF Qwen2.5-VL-7B-Instruct-Q8_0.gguf",
    ("llm", "mistral-small-3.2", "24b"): (
        "unsloth/Mistral-Small-3.2-24B-Instruct-2506-GGUF "
        "Mistral-Small-3.2-24B-Instruct-2506-Q4_K_M.gguf"
    ),
    ("clip_vision", "clip_vision_h", None): (
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged split_files/clip_vision/clip_vision_h.safetensors"
    ),
}  # fmt: skip

#: Override keys users may pass (component kinds), → the components they can fill.
OVERRIDE_KEYS: dict[str, tuple[str, ...]] = {
    "vae": ("vae",),
    "taesd": ("taesd",),
    "clip_l": ("clip_l", "clip_h"),
    "clip_g": ("clip_g",),
    "t5xxl": ("t5xxl", "umt5xxl"),
    "llm": ("llm",),
    "clip_vision": ("clip_vision",),
    "control_net": ("controlnet",),
    "upscaler": ("upscaler",),
    "photo_maker": ("photomaker",),
}
#: Override key → the catalog kind its names are looked up in (close matches of that kind).
OVERRIDE_KINDS = {
    "vae": "vae", "taesd": "taesd", "clip_l": "text_encoder", "clip_g": "text_encoder",
    "t5xxl": "text_encoder", "llm": "text_encoder", "clip_vision": "clip_vision",
    "control_net": "controlnet", "upscaler": "upscaler", "photo_maker": "photomaker",
}  # fmt: skip
_NEED_KEY = {"clip_h": "clip_l", "umt5xxl": "t5xxl", "controlnet": "control_net"}


@dataclass(frozen=True)
class LoadPlan:
    """What to load: ``slots`` maps the bindings' arguments to files; ``info`` is the model."""

    info: ModelInfo
    slots: Mapping[str, str]
    components: Mapping[str, ModelInfo] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # slot → model|override|catalog

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.info.to_dict(),
            "slots": dict(self.slots),
            "sources": dict(self.sources),
            "components": {k: v.to_dict() for k, v in self.components.items()},
        }


def satisfies(info: ModelInfo, need: Need) -> bool:
    """Whether a component file fills a need (kind, family and size all fit)."""
    return (
        info.supported
        and info.component == need.component
        and need.family in (None, info.arch)
        and need.variant in (None, info.variant)
    )


def hint(need: Need) -> str | None:
    for key in ((need.component, need.family, need.variant), (need.component, need.family, None)):
        if key in PULL_HINTS:
            return f"{PULL_COMMAND} {PULL_HINTS[key]}"
    return None


def need_key(component: str) -> str:
    """The override key (and request field) that fills ``component`` (``umt5xxl`` → ``t5xxl``)."""
    return _NEED_KEY.get(component, component)


def _missing(info: ModelInfo, need: Need, catalog: Catalog) -> MissingComponent:
    slot = COMPONENT_SLOTS[need.component]
    roots = ", ".join(str(r.path) for r in catalog.roots) or "no model folders"
    return MissingComponent(
        info.path,
        need.component,
        f"{info.title} needs a {need} ({slot}); none found in {roots}",
        looked_for=[f"{need.component} family={need.family or 'any'} size={need.variant or 'any'}"],
        hint=hint(need),
    )


def missing(
    info: ModelInfo,
    overrides: Mapping[str, object] | None = None,
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
) -> list[MissingComponent]:
    """Every component ``info`` needs that neither ``overrides`` (a file, or ``None``/``False``:
    do without) nor the catalog provides, each as the error :func:`plan` would raise (its
    ``hint`` the ``sdcpp pull`` command). Empty when the model can be assembled."""
    given = {_NEED_KEY.get(k, k) for k in overrides or {}}
    needs = [n for n in info.needs if _NEED_KEY.get(n.component, n.component) not in given]
    if not needs:
        return []
    catalog = catalog or scan(settings or Settings.from_env())
    usable = [e.info for e in catalog.usable() if e.info is not None]
    return [_missing(info, n, catalog) for n in needs if not any(satisfies(c, n) for c in usable)]


def _rank(entry: Entry, model: ModelInfo) -> tuple[int, int, str]:
    """Prefer files next to the model, then names that mention the model's arch."""
    near = 0 if Path(entry.path).parent == Path(model.path).parent else 1
    arch = (model.arch or "").split("_")[0]
    named = 0 if arch and arch in Path(entry.path).name.lower() else 1
    return near, named, entry.name


def _main(model: str | Path, catalog: Catalog | None, settings: Settings) -> ModelInfo:
    path = Path(model).expanduser()
    if path.exists():
        return inspect(path)
    catalog = catalog or scan(settings)
    entry = catalog.find(str(model), kind="model")
    if entry.info is None:  # pragma: no cover - find(kind="model") only returns detected files
        raise UnsupportedModel(entry.path, entry.error or "unreadable")
    return entry.info


def plan(
    model: str | Path,
    overrides: Mapping[str, str | Path | None] | None = None,
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
) -> LoadPlan:
    """Resolve ``model`` (a path or a catalog name) and every component it needs.

    ``overrides`` maps component kinds (``vae``, ``clip_l``, ``t5xxl``, ``llm``, ``taesd``,
    ``clip_vision``, ``control_net``, …) to a file path or catalog name; ``None`` means "do
    without it" (the engine runs some models with a missing text encoder).
    """
    settings = settings or Settings.from_env()
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in OVERRIDE_KEYS:
            raise InvalidRequest(key, f"not a component; use one of {', '.join(OVERRIDE_KEYS)}")
    info = _main(model, catalog, settings)
    if info.kind != "model":
        raise UnsupportedModel(info.path, f"is a {info.title} {info.kind}, not a main model")
    if not info.supported or info.slot is None:
        raise UnsupportedModel(info.path, info.reason or "the engine cannot load this model")
    slots = {info.slot: info.path}
    sources = {info.slot: "model"}
    components: dict[str, ModelInfo] = {info.slot: info}

    def resolve_override(key: str, value: str | Path) -> ModelInfo:
        p = Path(value).expanduser()
        if p.exists():
            return inspect(p)
        nonlocal catalog
        catalog = catalog or scan(settings)
        entry = catalog.find(str(value), OVERRIDE_KINDS.get(key), label=key, other=True)
        if entry.info is None:
            raise UnsupportedModel(entry.path, entry.error or "unreadable")
        return entry.info

    needed = {_NEED_KEY.get(n.component, n.component): n for n in info.needs}
    for key, value in overrides.items():
        if value is None or key in needed:
            continue
        comp = resolve_override(key, value)
        if comp.component not in OVERRIDE_KEYS[key] or not comp.supported or comp.slot is None:
            raise UnsupportedModel(comp.path, f"is a {comp.title} {comp.kind}, not a {key}")
        slots[comp.slot], sources[comp.slot], components[comp.slot] = comp.path, "override", comp
    for key, need in needed.items():
        slot = COMPONENT_SLOTS[need.component]
        if key in overrides:
            value = overrides[key]
            if value is None:
                continue
            comp = resolve_override(key, value)
            if not satisfies(comp, need):
                raise UnsupportedModel(
                    comp.path, f"is a {comp.title} {comp.kind}; {info.title} needs a {need}"
                )
            slots[slot], sources[slot], components[slot] = comp.path, "override", comp
            continue
        catalog = catalog or scan(settings)
        found = sorted(
            ((e, e.info) for e in catalog.usable() if e.info and satisfies(e.info, need)),
            key=lambda pair: _rank(pair[0], info),
        )
        if not found:
            raise _missing(info, need, catalog)
        best = found[0][1]
        slots[slot], sources[slot], components[slot] = best.path, "catalog", best
    return LoadPlan(info, slots, components, sources)
