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

from typing import TYPE_CHECKING

from sdcpp_service._lazy import lazy_members

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
    "ConvertProgress": "sdcpp_service.convert.run",
    "ConvertResult": "sdcpp_service.convert.run",
    "Plan": "sdcpp_service.convert.plan",
    "Rule": "sdcpp_service.convert.plan",
    "Skipped": "sdcpp_service.convert.batch",
    "TensorPlan": "sdcpp_service.convert.plan",
    "convert": "sdcpp_service.convert.run",
    "convert_all": "sdcpp_service.convert.batch",
    "list_types": "sdcpp_service.convert.run",
    "plan_conversion": "sdcpp_service.convert.run",
    "read_sidecar": "sdcpp_service.convert.meta",
}


__getattr__ = lazy_members(__name__, _LAZY)
