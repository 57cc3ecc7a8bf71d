"""``inspect(path) -> ModelInfo``: one file's header, detection and summary in one record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sdcpp_service.errors import UnsupportedModel
from sdcpp_service.models.archs import ENGINE_VERSION_NAMES, Defaults, Need
from sdcpp_service.models.detect import Detection, detect
from sdcpp_service.models.headers import FileMemo, Header, read_header

#: Model-file extensions, stripped to make a short name.
MODEL_SUFFIXES = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class ModelInfo:
    """Everything known about one model file or diffusers folder, from its header alone.

    ``kind`` is model, vae, taesd, text_encoder, lora, controlnet, upscaler, embedding,
    photomaker or clip_vision. For a main model ``arch`` is the engine's version name
    (``flux``, ``sdxl``…); for a component it is its family (``flux`` VAE, ``qwen3`` LLM, ``sd1``
    LoRA). ``slot`` is the bindings' argument that takes the file (``diffusion_model_path``,
    ``vae_path``…); ``component`` the load-plan kind a component fills (``vae``, ``clip_l``…).
    """

    path: str
    name: str
    format: str
    size: int
    kind: str
    arch: str | None
    variant: str | None = None
    slot: str | None = None
    component: str | None = None
    contains: tuple[str, ...] = ()
    needs: tuple[Need, ...] = ()
    dtype: str | None = None
    dtypes: Mapping[str, int] = field(default_factory=dict)
    params: int = 0
    tensors: int = 0
    defaults: Defaults | None = None
    modelspec: str | None = None
    supported: bool = True
    reason: str | None = None
    engine_version: str | None = None
    details: Mapping[str, str | int] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """``arch (variant)`` for display."""
        base = self.arch or self.kind
        return f"{base} ({self.variant})" if self.variant else base

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        """Inverse of :meth:`to_dict` (used by the catalog cache)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["needs"] = tuple(Need(**n) for n in data.get("needs") or ())
        values["contains"] = tuple(data.get("contains") or ())
        values["defaults"] = Defaults(**data["defaults"]) if data.get("defaults") else None
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["needs"] = [asdict(n) for n in self.needs]
        data["contains"] = list(self.contains)
        data["dtypes"] = dict(self.dtypes)
        data["details"] = dict(self.details)
        return data


def short_name(path: str | Path) -> str:
    """The stem users type: ``flux1-schnell-Q4_0`` for ``…/flux1-schnell-Q4_0.gguf``."""
    name = Path(path).name
    for suffix in MODEL_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def summarize(header: Header, found: Detection) -> ModelInfo:
    """Combine a header and its detection into a :class:`ModelInfo` (pure)."""
    weight: Counter[str] = Counter()
    count: Counter[str] = Counter()
    params = 0
    for info in header.tensors.values():
        n = info.numel
        params += n
        weight[info.dtype] += n
        count[info.dtype] += 1
    details = dict(found.details)
    if "general.architecture" in header.metadata:
        details["gguf_architecture"] = header.metadata["general.architecture"]
    return ModelInfo(
        path=header.path,
        name=short_name(header.path),
        format=header.format,
        size=header.size,
        kind=found.kind,
        arch=found.arch,
        variant=found.variant,
        slot=found.slot,
        component=found.component,
        contains=found.contains,
        needs=found.needs,
        dtype=weight.most_common(1)[0][0] if weight else None,
        dtypes=dict(count.most_common()),
        params=params,
        tensors=len(header.tensors),
        defaults=found.defaults,
        modelspec=header.metadata.get("modelspec.architecture"),
        supported=found.supported,
        reason=found.reason,
        engine_version=ENGINE_VERSION_NAMES.get(found.arch or "")
        if found.kind == "model"
        else None,
        details=details,
    )


def inspect(path: str | Path) -> ModelInfo:
    """Read a model file's header (never its weights) and say what it is; a file inspected
    before, unchanged since, is answered from memory.

    Raises :class:`~sdcpp_service.errors.InvalidModelFile` for unreadable, truncated or corrupt
    files and :class:`~sdcpp_service.errors.UnsupportedModel` when nothing in the table matches.
    """
    return _INSPECTED(path)


def _inspect(path: str | Path) -> ModelInfo:
    header = read_header(path)
    found = detect(header.tensors)
    if found is None:
        sample = ", ".join(sorted(header.tensors)[:3]) or "none"
        raise UnsupportedModel(
            path, f"no known model layout ({len(header.tensors)} tensors, e.g. {sample})"
        )
    return summarize(header, found)


_INSPECTED = FileMemo(_inspect)
