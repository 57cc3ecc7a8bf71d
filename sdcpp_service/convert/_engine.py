"""The engine's weight-type table, read from ggml inside the engine library (loads the engine).

A type is writable when the engine's own rule parser accepts it (``parse_tensor_type_rules``:
``f32``, or a type with a ``to_float`` and a size) — the same set ``convert`` can produce.
Block and type sizes come from ``ggml_blck_size``/``ggml_type_size``, so plans follow the
pinned engine when it changes.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdcpp_service.convert.plan import TypeTable


class _Traits(ctypes.Structure):
    """``struct ggml_type_traits`` (``ggml/include/ggml.h``)."""

    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


def type_rows(cdll: Any, count: int) -> list[dict[str, Any]]:
    """The table as plain rows (``QType`` fields), from the engine library ``cdll`` alone: the
    engine child sends these before it imports anything of ours."""
    name_of = cdll.sd_type_name
    name_of.argtypes = [ctypes.c_int]
    name_of.restype = ctypes.c_char_p
    traits = cdll.ggml_get_type_traits
    traits.argtypes = [ctypes.c_int]
    traits.restype = ctypes.POINTER(_Traits)
    rows: list[dict[str, Any]] = []
    for value in range(count):
        raw = name_of(value)
        if not raw:
            continue
        tr = traits(value).contents
        name = raw.decode("utf-8")
        if tr.blck_size <= 0 or tr.type_size <= 0 or not tr.type_name:
            continue  # removed slots ("DEPRECATED")
        rows.append(
            {
                "name": name.lower(),
                "engine_name": name,
                "id": value,
                "block_size": int(tr.blck_size),
                "type_size": int(tr.type_size),
                "quantized": bool(tr.is_quantized),
                "writable": name == "f32" or bool(tr.to_float),
            }
        )
    return rows


@cache
def engine_types() -> TypeTable:
    from sdcpp_service.convert.plan import TypeTable
    from sdcpp_service.engine.sdcpp import bindings

    lib = bindings()
    return TypeTable.from_json(type_rows(lib._lib, int(lib.GGMLType.SD_TYPE_COUNT)))
