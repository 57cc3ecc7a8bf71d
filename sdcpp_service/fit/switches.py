"""The engine's memory switches, read from and written back to a job's options and request."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from sdcpp_service.types import LoadOptions

#: Switches that live in the request rather than the load options.
REQUEST_SWITCHES = ("vae_tiling",)
R = TypeVar("R")


@dataclass(frozen=True)
class Switches:
    """What decides memory besides the model and the size: all off is the engine's default.

    ``wtype`` converts weights at load (``q8_0``, ``q4_0``…; ``default`` keeps the files').
    """

    flash_attn: bool = False
    vae_tiling: bool = False
    clip_on_cpu: bool = False
    vae_on_cpu: bool = False
    control_net_on_cpu: bool = False
    offload_to_cpu: bool = False
    mmap: bool = False
    wtype: str = "default"

    @classmethod
    def of(cls, options: LoadOptions | None = None, request: Any = None) -> Switches:
        """The switches a job already has (load options plus the request's ``vae_tiling``)."""
        values: dict[str, Any] = {}
        if options is not None:
            for f in dataclasses.fields(cls):
                if f.name not in REQUEST_SWITCHES and hasattr(options, f.name):
                    values[f.name] = getattr(options, f.name)
            values["flash_attn"] = options.flash_attn or options.diffusion_flash_attn
        if request is not None and hasattr(request, "vae_tiling"):
            values["vae_tiling"] = bool(request.vae_tiling)
        return cls(**values)

    def on(self) -> list[str]:
        """Names of the switches that differ from the default (``wtype=q8_0`` for a type)."""
        out = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out.append(f.name if value is True else f"{f.name}={value}")
        return out

    def options(self, options: LoadOptions) -> LoadOptions:
        """``options`` with these load-time switches."""
        changes = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in REQUEST_SWITCHES and hasattr(options, f.name)
        }
        return dataclasses.replace(options, **changes)

    def request(self, request: R) -> R:
        """``request`` (a dataclass with ``vae_tiling``) with this tiling switch."""
        if dataclasses.is_dataclass(request) and hasattr(request, "vae_tiling"):
            return dataclasses.replace(request, vae_tiling=self.vae_tiling)  # type: ignore[type-var]
        return request

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Switches a choice may turn on, with a rough relative time cost (lower is faster): flash
#: attention changes little on most backends, tiling decodes overlapping tiles, keeping a
#: component on the CPU runs it there, offloading copies every weight to the device per use.
CANDIDATES: tuple[tuple[str, int], ...] = (
    ("flash_attn", 1),
    ("vae_tiling", 2),
    ("clip_on_cpu", 2),
    ("vae_on_cpu", 4),
    ("control_net_on_cpu", 4),
    ("offload_to_cpu", 8),
)
#: Switches that only move memory between a device and RAM (nothing to gain on a CPU build).
DEVICE_ONLY = frozenset({"clip_on_cpu", "vae_on_cpu", "control_net_on_cpu", "offload_to_cpu"})
#: Weight types a choice may propose when asked to quantize, smallest loss first.
QUANT_STEPS: tuple[tuple[str, int], ...] = (("q8_0", 16), ("q4_0", 32))
