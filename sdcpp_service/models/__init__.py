"""Model intelligence: read headers, detect architectures, inspect and hash model files.

``inspect(path)`` reads a file's header only (never its weights) and says what it is, which
loader slot takes it, what it contains and what it still needs; ``scan(settings)`` catalogs the
model folders (cached); ``plan(model, overrides, settings)`` picks every component a model needs
and returns the load plan (binding argument → file) the engine layer consumes.
"""

from __future__ import annotations

from sdcpp_service.models.archs import Defaults, Need
from sdcpp_service.models.assemble import LoadPlan, plan
from sdcpp_service.models.catalog import Catalog, Entry, locate, scan
from sdcpp_service.models.detect import Detection, detect
from sdcpp_service.models.hashing import FileHash, hash_file
from sdcpp_service.models.headers import Header, TensorInfo, read_header
from sdcpp_service.models.hub import Pulled, pull
from sdcpp_service.models.inspect import ModelInfo, inspect

__all__ = [
    "Catalog",
    "Defaults",
    "Detection",
    "Entry",
    "FileHash",
    "Header",
    "LoadPlan",
    "ModelInfo",
    "Need",
    "Pulled",
    "TensorInfo",
    "detect",
    "hash_file",
    "inspect",
    "locate",
    "plan",
    "pull",
    "read_header",
    "scan",
]
