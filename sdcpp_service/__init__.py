"""sdcpp-service: stable-diffusion.cpp as a library, a CLI and an HTTP service.

The documented library surface is exactly ``__all__``::

    import sdcpp_service

    with sdcpp_service.Pipeline.load("models/sd15.safetensors") as pipe:
        image = pipe.generate("a lighthouse at dawn", steps=20, seed=42)[0]
        image.save("out.png")  # keeps image.info["parameters"], the A1111 infotext

Heavy members are imported on first use, so ``import sdcpp_service`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdcpp_service._lazy import lazy_members
from sdcpp_service._version import __version__

if TYPE_CHECKING:
    from sdcpp_service.config import Settings
    from sdcpp_service.engine.oneshot import generate_video
    from sdcpp_service.engine.pipeline import Pipeline
    from sdcpp_service.engine.upscale import Upscaler, upscale
    from sdcpp_service.errors import (
        InvalidImage,
        InvalidModelFile,
        InvalidRequest,
        MissingComponent,
        SdcppError,
        UnknownName,
    )
    from sdcpp_service.models import ModelInfo, inspect, plan, pull, scan
    from sdcpp_service.styles import apply_styles
    from sdcpp_service.types import (
        GenerateRequest,
        GenerateResult,
        LoadOptions,
        Lora,
        Progress,
        VideoRequest,
        VideoResult,
    )

__all__ = [
    "GenerateRequest",
    "GenerateResult",
    "InvalidImage",
    "InvalidModelFile",
    "InvalidRequest",
    "LoadOptions",
    "Lora",
    "MissingComponent",
    "ModelInfo",
    "Pipeline",
    "Progress",
    "SdcppError",
    "Settings",
    "UnknownName",
    "Upscaler",
    "VideoRequest",
    "VideoResult",
    "__version__",
    "apply_styles",
    "generate_video",
    "inspect",
    "plan",
    "pull",
    "scan",
    "upscale",
]

_LAZY = {
    "Settings": "sdcpp_service.config",
    **{
        name: "sdcpp_service.errors"
        for name in (
            "InvalidImage", "InvalidModelFile", "InvalidRequest", "MissingComponent",
            "SdcppError", "UnknownName",
        )
    },
    **{
        name: "sdcpp_service.types"
        for name in (
            "GenerateRequest", "GenerateResult", "LoadOptions", "Lora", "Progress",
            "VideoRequest", "VideoResult",
        )
    },
    "Pipeline": "sdcpp_service.engine.pipeline",
    "ModelInfo": "sdcpp_service.models",
    "inspect": "sdcpp_service.models",
    "plan": "sdcpp_service.models",
    "pull": "sdcpp_service.models",
    "scan": "sdcpp_service.models",
    "Upscaler": "sdcpp_service.engine.upscale",
    "upscale": "sdcpp_service.engine.upscale",
    "generate_video": "sdcpp_service.engine.oneshot",
    "apply_styles": "sdcpp_service.styles",
}  # fmt: skip

__getattr__ = lazy_members(__name__, _LAZY)
