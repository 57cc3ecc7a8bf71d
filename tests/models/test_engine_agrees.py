"""Our detection against the real engine, on the synthetic kit's models.

For every kit file, the slot we choose is the slot the kit feeds it through; for every kit
main model, loading it through *our* slots makes the engine log the version we predicted.
"""

from __future__ import annotations

from typing import Any

import pytest

from sdcpp_service.models import inspect
from sdcpp_service.models.archs import ENGINE_VERSION_NAMES
from tests.synth.enginelog import EngineLog
from tests.synth.kit import Kit
from tests.synth.models import MODELS

pytestmark = pytest.mark.engine

MAIN_SLOTS = ("model", "diffusion_model")
KIT_MAIN = sorted(n for n, m in MODELS.items() if any(f.slot in MAIN_SLOTS for f in m.files))
#: Kit slot names are binding argument names without ``_path`` (LoRA/embedding have none).
NO_PATH = ("lora", "embedding")


#: ggml's own GGUF parser stops at 4-D tensors (Wan's Conv3d patch embedding is 5-D); the engine
#: logs its refusal and reopens the file with its extended reader (src/model_io/gguf_io.cpp).
_GGUF_5D_FALLBACK = ("has invalid number of dimensions: 5 > 4", "failed to read tensor info")


def _gguf_fallback(line: str) -> bool:
    return "gguf_init_from_file" in line and line.endswith(_GGUF_5D_FALLBACK)


def _binding_arg(kit_slot: str) -> str:
    return kit_slot if kit_slot in NO_PATH else f"{kit_slot}_path"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_our_slot_is_the_kits_slot(kit: Kit, name: str) -> None:
    for kit_slot, path in kit.files(name).items():
        info = inspect(path)
        assert info.supported, info.reason
        assert info.slot == _binding_arg(kit_slot), (path.name, info.kind, info.arch)


@pytest.mark.parametrize("name", KIT_MAIN)
def test_engine_reports_the_version_we_predict(kit: Kit, engine_log: EngineLog, name: str) -> None:
    import stable_diffusion_cpp

    kwargs: dict[str, Any] = {}
    main = None
    for path in kit.files(name).values():
        info = inspect(path)
        assert info.slot is not None and info.slot.endswith("_path")
        kwargs[info.slot] = str(path)
        if info.kind == "model":
            main = info
    assert main is not None and main.arch is not None
    sd = stable_diffusion_cpp.StableDiffusion(verbose=True, n_threads=2, **kwargs)
    sd.close()
    assert engine_log.versions() == [ENGINE_VERSION_NAMES[main.arch]]
    assert [e for e in engine_log.errors() if not _gguf_fallback(e)] == []
    if MODELS[name].version:
        assert ENGINE_VERSION_NAMES[main.arch] == MODELS[name].version
