"""What a model file's header says, whatever its container: :class:`Header` and its
:class:`TensorInfo` (the readers are :mod:`~sdcpp_service.models.headers`, ``_gguf``, ``_torch``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor: shape in PyTorch order (outermost first) and dtype name (``F16``, ``Q4_0``…)."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Header:
    """What a header says: tensors, free-form metadata, and the container format."""

    path: str
    format: str  # "safetensors" | "gguf" | "pytorch" | "pytorch-legacy" | "diffusers"
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str] = field(default_factory=dict)
    size: int = 0
