"""Deterministic random values, fast: one pool of normals, sliced per tensor.

Drawing a billion fresh normals takes minutes; slicing a pre-drawn pool takes nothing. Each tensor
gets a contiguous slice at an offset derived from a hash of its key (file + tensor name), so the
values are reproducible, differ between tensors, and do not depend on the order of generation.
The common case (std 0.02, float16) is served zero-copy from a pre-scaled pool.
"""

from __future__ import annotations

import hashlib

import numpy as np

DEFAULT_STD = 0.02
POOL_SIZE = 1 << 26  # 67 M values: larger than any generated tensor (CLIP/Qwen3 embeddings ~39 M)


def _offset(key: str, n: int, size: int, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (size - n + 1)


class Pool:
    """Standard normals drawn once from ``numpy.random.default_rng(seed)``."""

    def __init__(self, seed: int, size: int = POOL_SIZE) -> None:
        self.seed = seed
        self.size = size
        self._unit: np.ndarray | None = None
        self._scaled: dict[tuple[float, str], np.ndarray] = {}

    @property
    def unit(self) -> np.ndarray:
        if self._unit is None:
            rng = np.random.default_rng(self.seed)
            self._unit = rng.standard_normal(self.size, dtype=np.float32)
        return self._unit

    def _scaled_pool(self, std: float, dtype: np.dtype) -> np.ndarray:
        key = (std, dtype.str)
        if key not in self._scaled:
            self._scaled[key] = (self.unit * np.float32(std)).astype(dtype)
        return self._scaled[key]

    def normal(self, key: str, n: int, std: float, dtype: np.dtype | str) -> np.ndarray:
        """``n`` values ~ N(0, std²) as a 1-D array of ``dtype`` (a view where possible)."""
        dtype = np.dtype(dtype)
        if n > self.size:
            raise ValueError(f"{key}: {n} values requested, pool holds {self.size}")
        off = _offset(key, n, self.size, self.seed)
        if std == DEFAULT_STD and dtype == np.float16:
            return self._scaled_pool(std, dtype)[off : off + n]
        return (self.unit[off : off + n] * np.float32(std)).astype(dtype)
