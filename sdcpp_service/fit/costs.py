"""The measured cost table (``costs.json``, written by ``benchmarks/fit.py derive``).

For each engine runner (the names in the engine's ``<runner> compute buffer size`` log lines:
``clip``, ``unet``, ``vae``, ``taesd``…), model family and flash-attention setting, the compute
buffer is ``c0 + c1·T + c2·T²`` bytes, where T is the latent pixels the runner sees at once
(one image; one tile when the VAE tiles). The table also holds the process's runtime bytes
(the residual of peak RSS over weights and buffers) and the residual per output pixel.
A family the table has not measured borrows a measured one, and the estimate says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from sdcpp_service.models.archs import UNET_ARCHES

#: Engine runner name → the phase it runs in.
RUNNER_PHASES: dict[str, str] = {
    "clip": "conditioning",
    "t5": "conditioning",
    "llm": "conditioning",
    "umt5": "conditioning",
    "clip_vision": "conditioning",
    "unet": "sampling",
    "control_net": "sampling",
    "mmdit": "sampling",
    "flux": "sampling",
    "wan": "sampling",
    "vae": "decode",
    "taesd": "decode",
    "esrgan": "upscale",
}
#: Families measured nowhere borrow these (order: first present wins).
BORROW: dict[str, tuple[str, ...]] = {
    "sdxs_09": ("sdxs_512_ds",),
    "sd1_tiny_unet": ("sdxs_512_ds",),
    "sd2_tiny_unet": ("sdxs_512_ds",),
}
DEFAULT_BORROW = ("sd1", "sdxs_512_ds")


def decode_family(arch: str) -> str:
    """The VAE family of a main model's arch (SD1/SD2/SDXL UNets share one 4-channel VAE)."""
    return "sd" if arch in UNET_ARCHES else arch


@dataclass(frozen=True)
class Curve:
    """``c0 + c1·T + c2·T²`` bytes; ``error`` is the fit's worst relative error on its points."""

    coef: Sequence[float]
    error: float = 0.0
    points: int = 0

    def at(self, tokens: float) -> int:
        c0, c1, c2 = (list(self.coef) + [0.0, 0.0, 0.0])[:3]
        return max(0, int(c0 + c1 * tokens + c2 * tokens * tokens))


@dataclass(frozen=True)
class Table:
    """The parsed ``costs.json``."""

    curves: Mapping[str, Curve]
    runners: Mapping[str, Mapping[str, Sequence[str]]]  # family → phase → runner names
    runtime_bytes: int
    per_pixel_bytes: float
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: the runtime of a process that only upscales (no generation pipeline); 0: runtime_bytes
    upscale_runtime_bytes: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Table:
        curves = {k: Curve(tuple(v["coef"]), v.get("error", 0.0), v.get("points", 0))
                  for k, v in data.get("curves", {}).items()}  # fmt: skip
        return cls(
            curves=curves,
            runners=data.get("runners", {}),
            runtime_bytes=int(data.get("runtime_bytes", 0)),
            per_pixel_bytes=float(data.get("per_pixel_bytes", 0.0)),
            meta=data.get("meta", {}),
            upscale_runtime_bytes=int(data.get("upscale_runtime_bytes", 0)),
        )

    def family(self, arch: str) -> tuple[str, bool]:
        """The measured family to use for ``arch``, and whether it is ``arch`` itself."""
        if arch in self.runners:
            return arch, True
        for other in (*BORROW.get(arch, ()), *DEFAULT_BORROW):
            if other in self.runners:
                return other, False
        return arch, False

    def phase_runners(self, family: str, phase: str) -> Sequence[str]:
        return self.runners.get(family, {}).get(phase, ())

    def curve(self, runner: str, family: str, flash: bool) -> Curve | None:
        for fa in (flash, False, True):
            found = self.curves.get(key(runner, family, fa))
            if found is not None:
                return found
        return None


def key(runner: str, family: str, flash: bool) -> str:
    return f"{runner}/{family}/{'fa1' if flash else 'fa0'}"


@lru_cache(maxsize=1)
def default_table() -> Table:
    """The table shipped with the package."""
    text = resources.files("sdcpp_service.fit").joinpath("costs.json").read_text("utf-8")
    return Table.from_dict(json.loads(text))
