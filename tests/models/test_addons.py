"""LoRA and ControlNet fit, read from both headers, on the kit's real files: what fits loads, what
would abort the engine (GGML_ASSERT) is refused first in one line naming both files, on the
library, the CLI and the server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sdcpp_service.cli import app
from sdcpp_service.engine.pipeline import Pipeline
from sdcpp_service.errors import UnsupportedModel
from sdcpp_service.models import addons
from tests.synth.kit import Kit
from tests.synth.writers import TensorData, write_safetensors


def write_lora(path: Path, modules: dict[str, tuple[int, int]], style: str = "kohya") -> Path:
    """A rank-4 LoRA: module name → (out, in) of the weight it changes (1×1 convs)."""
    tensors = []
    for name, (out, inp) in modules.items():
        down, up = (4, inp, 1, 1), (out, 4, 1, 1)
        if style == "kohya":
            pairs = ((f"{name}.lora_down.weight", down), (f"{name}.lora_up.weight", up))
        else:
            pairs = ((f"{name}.lora_A.weight", down), (f"{name}.lora_B.weight", up))
        for key, shape in pairs:
            data = np.full(int(np.prod(shape)), 0.01, dtype=np.float16)
            tensors.append(TensorData(key, shape, "F16", data))
    return write_safetensors(path, tensors, {})


def sd1_shape(kit: Kit, module: str) -> tuple[int, int]:
    shape = addons.model_modules(addons.shapes(kit.path("sd1")))[module]
    return shape[0], shape[1]


def test_the_kit_lora_fits_both_sd1_family_models(kit: Kit) -> None:
    addons.check_lora(kit.path("sdxs"), kit.path("lora_sd1"))
    addons.check_lora(kit.path("sd1"), kit.path("lora_sd1"))
    wanted = addons.lora_modules(addons.shapes(kit.path("lora_sd1")))
    have = addons.model_modules(addons.shapes(kit.path("sdxs")))
    assert wanted and set(wanted) <= set(have)  # every module maps onto a real model weight


@pytest.mark.parametrize("style", ["kohya", "peft"])
def test_an_sd1_lora_for_blocks_sdxs_shaped_differently_is_refused(
    kit: Kit, tmp_path: Path, style: str
) -> None:
    out, inp = sd1_shape(kit, "unet:output_blocks_3_1_proj_in")
    name = "lora_unet_up_blocks_1_attentions_0_proj_in"
    if style == "peft":
        name = "unet.up_blocks.1.attentions.0.proj_in"
    lora = write_lora(tmp_path / "full_sd1.safetensors", {name: (out, inp)}, style)
    addons.check_lora(kit.path("sd1"), lora)  # made for SD1: fits
    with pytest.raises(UnsupportedModel) as err:
        addons.check_lora(kit.path("sdxs"), lora)
    message = str(err.value)
    assert "full_sd1.safetensors" in message and "sdxs.safetensors" in message
    assert "output_blocks_3_1_proj_in" in message and f"{out}×{inp}" in message


def test_a_lora_with_no_layer_in_the_model_is_refused(kit: Kit, tmp_path: Path) -> None:
    lora = write_lora(tmp_path / "other.safetensors", {"lora_unet_input_blocks_2_1_proj_in": (320, 320)})  # fmt: skip
    addons.check_lora(kit.path("sd1"), lora)
    with pytest.raises(UnsupportedModel, match="none of its 1 layers is in the model"):
        addons.check_lora(kit.path("sdxs"), lora)


def test_a_file_that_is_not_a_lora_is_refused(kit: Kit) -> None:
    with pytest.raises(UnsupportedModel, match="esrgan.*upscaler, not a LoRA"):
        addons.check_lora(kit.path("sd1"), kit.path("esrgan_x4"))


def test_controlnet_sd1_fits_sd1_not_sdxs(kit: Kit) -> None:
    addons.check_control_net(kit.path("sd1"), kit.path("controlnet_sd1"))
    with pytest.raises(UnsupportedModel) as err:
        addons.check_control_net(kit.path("sdxs"), kit.path("controlnet_sd1"))
    message = str(err.value)
    assert "control_sd1.safetensors" in message and "does not fit sdxs.safetensors" in message


def test_library_refuses_the_controlnet_before_loading(kit: Kit) -> None:
    with pytest.raises(UnsupportedModel, match="does not fit sdxs"):
        Pipeline.load(kit.path("sdxs"), control_net=kit.path("controlnet_sd1"))


def test_cli_refuses_the_controlnet_in_one_line(kit: Kit, tmp_path: Path) -> None:
    control = tmp_path / "edges.png"
    Image.new("RGB", (64, 64), "white").save(control)
    args = ["generate", "x", "-m", str(kit.path("sdxs")), "--control-net"]
    args += [str(kit.path("controlnet_sd1")), "--control-image", str(control), "-o", "o.png"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "control_sd1.safetensors" in lines[0] and "sdxs" in lines[0]
    assert not (tmp_path / "o.png").exists()


@pytest.mark.engine
def test_library_refuses_the_lora_on_the_loaded_model(kit: Kit, tmp_path: Path) -> None:
    out, inp = sd1_shape(kit, "unet:output_blocks_3_1_proj_in")
    bad = write_lora(tmp_path / "full_sd1.safetensors", {"lora_unet_up_blocks_1_attentions_0_proj_in": (out, inp)})  # fmt: skip
    with Pipeline.load(kit.path("sdxs")) as pipe:
        with pytest.raises(UnsupportedModel, match="full_sd1.safetensors: does not fit sdxs"):
            pipe.request("x", loras=[str(bad)])
        fits = pipe.request("x", loras=[str(kit.path("lora_sd1"))], width=64, height=64, steps=1)
        assert pipe.run(fits).images[0].size == (64, 64)  # the fitting one runs for real
