"""``sdcpp convert``: safetensors / ckpt / GGUF / diffusers → GGUF of any engine weight type.

    from sdcpp_service.convert import convert, plan_conversion
    p = plan_conversion("sd15.safetensors", "q4_k")  # types and exact size, nothing written
    r = convert("sd15.safetensors", qtype="q8_0")  # → sd15-q8_0.gguf + sd15-q8_0.gguf.json

Modules: :mod:`.plan` (pure: types, rule evaluation, exact sizes), :mod:`.mirror` (what the
engine's loader does, as data), :mod:`.rules` (the default rule table), :mod:`.source`
(detection, tensor list, naming), :mod:`.run` (the conversion), :mod:`.batch` (``--all``),
:mod:`.meta` (the sidecar), :mod:`._child` / :mod:`._worker` (the engine process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdcpp_service.convert.batch import Skipped, convert_all
    from sdcpp_service.convert.meta import read_sidecar
    from sdcpp_service.convert.plan import Plan, Rule, TensorPlan
    from sdcpp_service.convert.run import (
        ConvertProgress,
        ConvertResult,
        convert,
        list_types,
        plan_conversion,
    )

__all__ = [
    "ConvertProgress",
    "ConvertResult",
    "Plan",
    "Rule",
    "Skipped",
    "TensorPlan",
    "convert",
    "convert_all",
    "list_types",
    "plan_conversion",
    "read_sidecar",
]

_LAZY = {
    "ConvertProgress": "run",
    "ConvertResult": "run",
    "Plan": "plan",
    "Rule": "plan",
    "Skipped": "batch",
    "TensorPlan": "plan",
    "convert": "run",
    "convert_all": "batch",
    "list_types": "run",
    "plan_conversion": "run",
    "read_sidecar": "meta",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"sdcpp_service.convert.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'sdcpp_service.convert' has no attribute {name!r}")
