"""The engine's weight-type table, read from ggml inside the engine library (loads the engine).

A type is writable when the engine's own rule parser accepts it (``parse_tensor_type_rules``:
``f32``, or a type with a ``to_float`` and a size) — the same set ``convert`` can produce.
Block and type sizes come from ``ggml_blck_size``/``ggml_type_size``, so plans follow the
pinned engine when it changes.
"""

from __future__ import annotations

import ctypes
from functools import cache

from sdcpp_service.convert.plan import QType, TypeTable


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


@cache
def engine_types() -> TypeTable:
    from sdcpp_service.engine.sdcpp import native

    nat = native()
    cdll = nat.lib._lib
    traits = cdll.ggml_get_type_traits
    traits.argtypes = [ctypes.c_int]
    traits.restype = ctypes.POINTER(_Traits)
    rows: list[QType] = []
    for value in range(nat.counts["type"]):
        raw = nat.names["type"](value)
        if not raw:
            continue
        tr = traits(value).contents
        name = raw.decode("utf-8")
        if tr.blck_size <= 0 or tr.type_size <= 0 or not tr.type_name:
            continue  # removed slots ("DEPRECATED")
        writable = name == "f32" or bool(tr.to_float)
        rows.append(
            QType(
                name=name.lower(),
                engine_name=name,
                id=value,
                block_size=int(tr.blck_size),
                type_size=int(tr.type_size),
                quantized=bool(tr.is_quantized),
                writable=writable,
            )
        )
    return TypeTable(tuple(rows))
