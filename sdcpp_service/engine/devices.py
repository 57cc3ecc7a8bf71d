"""The compute devices the engine sees and the one it runs on (ggml's device registry).

The bindings link ggml into ``libstable-diffusion`` and export its C device API
(``ggml_backend_dev_count`` …), so the devices listed here are exactly the ones the engine can pick.
Which one it picks follows ``sd_get_default_backend`` in the vendored ``src/util.cpp``:
``SD_VK_DEVICE=N`` selects ``VulkanN`` when that device exists; otherwise the first GPU, then the
first integrated GPU, then the CPU (``get_default_backend_name`` in ``src/ggml_extend.hpp``).
"""

from __future__ import annotations

import ctypes
from dataclasses import asdict, dataclass
from typing import Any

#: ``enum ggml_backend_dev_type`` in ``ggml/include/ggml-backend.h``, in order.
DEVICE_TYPES = ("cpu", "gpu", "igpu", "accel")


@dataclass(frozen=True)
class Device:
    name: str  # ggml's device name: "CPU", "CUDA0", "Vulkan0", "Metal", …
    description: str  # the driver's name for it: "NVIDIA H100 80GB HBM3", the CPU model, …
    type: str  # one of DEVICE_TYPES
    memory_total: int  # bytes (0 when the backend does not say)
    memory_free: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_devices(cdll: Any) -> list[Device]:
    """Every device registered in the engine library ``cdll`` (a ``ctypes.CDLL``)."""
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for name, args, res in (
        ("ggml_backend_dev_count", [], sz),
        ("ggml_backend_dev_get", [sz], vp),
        ("ggml_backend_dev_name", [vp], ctypes.c_char_p),
        ("ggml_backend_dev_description", [vp], ctypes.c_char_p),
        ("ggml_backend_dev_type", [vp], ctypes.c_int),
        ("ggml_backend_dev_memory", [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
    ):
        func = getattr(cdll, name)
        func.argtypes, func.restype = args, res
    found: list[Device] = []
    for i in range(int(cdll.ggml_backend_dev_count())):
        dev = cdll.ggml_backend_dev_get(i)
        free, total = sz(0), sz(0)
        cdll.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        kind = int(cdll.ggml_backend_dev_type(dev))
        found.append(
            Device(
                name=(cdll.ggml_backend_dev_name(dev) or b"").decode("utf-8", "replace"),
                description=(cdll.ggml_backend_dev_description(dev) or b"").decode(
                    "utf-8", "replace"
                ),
                type=DEVICE_TYPES[kind] if 0 <= kind < len(DEVICE_TYPES) else str(kind),
                memory_total=int(total.value),
                memory_free=int(free.value),
            )
        )
    return found


def engine_device(devices: list[Device], vk_device: str = "") -> Device | None:
    """The device the engine's default backend runs on (see the module docstring)."""
    if vk_device.strip().isdigit():
        wanted = f"Vulkan{int(vk_device)}"
        for dev in devices:
            if dev.name == wanted:
                return dev
    for kind in ("gpu", "igpu", "cpu"):
        for dev in devices:
            if dev.type == kind:
                return dev
    return None
