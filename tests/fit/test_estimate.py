"""``sdcpp_service.fit``: weight bytes from headers, the phase model, switch choice (no engine)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sdcpp_service.errors import DoesNotFit, InvalidRequest
from sdcpp_service.fit import Budget, Switches, Table, choose, estimate, parse_bytes
from sdcpp_service.fit.weights import file_weights
from sdcpp_service.types import GenerateRequest
from tests.synth.writers import write_sparse

MB = 2**20
#: A made-up table: CLIP flat, UNet quadratic (flash attention halves the T² term), VAE linear.
TABLE = Table.from_dict({
    "curves": {
        "clip/sd1/fa0": {"coef": [2 * MB, 0, 0]},
        "unet/sd1/fa0": {"coef": [10 * MB, 1000, 4]},
        "unet/sd1/fa1": {"coef": [10 * MB, 1000, 2]},
        "vae/sd/fa0": {"coef": [1 * MB, 100_000, 0]},
        "taesd/sd/fa0": {"coef": [0, 30_000, 0]},
    },
    "runners": {"sd1": {"conditioning": ["clip"], "sampling": ["unet"], "decode": ["vae"]}},
    "runtime_bytes": 60 * MB,
    "per_pixel_bytes": 12,
})  # fmt: skip


ATTN = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0"


def checkpoint(tmp_path: Path) -> Path:
    """An SD1-looking checkpoint header: 40 MB UNet (f16), 4 MB VAE (f32), 6 MB CLIP (f16)."""
    return write_sparse(tmp_path / "sd1.safetensors", [
        ("model.diffusion_model.input_blocks.0.0.weight", (320, 4, 3, 3), "F16"),
        (f"{ATTN}.attn2.to_k.weight", (320, 768), "F16"),
        ("model.diffusion_model.middle_block.1.norm.weight", (320,), "F16"),
        ("model.diffusion_model.output_blocks.7.1.norm.weight", (320,), "F16"),
        ("model.diffusion_model.big.weight", (20 * MB // 4096, 4096), "F16"),
        ("first_stage_model.decoder.conv_in.weight", (MB // 1024, 1024), "F32"),
        ("cond_stage_model.transformer.w", (3 * MB // 1024, 1024), "F16"),
        ("model_ema.decay", (1,), "F32"),
    ])  # fmt: skip


def plan_of(path: Path) -> dict[str, str]:
    return {"model": str(path)}


def req(size: int = 512, **kw: object) -> GenerateRequest:
    return GenerateRequest("a fox", width=size, height=size, **kw)  # type: ignore[arg-type]


def test_weights_per_component_from_the_header(tmp_path: Path) -> None:
    w = file_weights(checkpoint(tmp_path), "model")
    unet = (320 * 4 * 9 + 320 * 768 + 2 * 320) * 2 + 20 * MB // 4096 * 4096 * 2
    assert w.components == {"diffusion_model": unet, "vae": 4 * MB, "text_encoders": 6 * MB}
    gguf = write_sparse(tmp_path / "dit.gguf", [("double_blocks.0.x.weight", (64, 256), "Q4_0")])
    assert file_weights(gguf, "diffusion_model").components == {"diffusion_model": 64 * 8 * 18}
    q8 = file_weights(checkpoint(tmp_path), "model", "q8_0").components
    assert q8["vae"] == MB // 32 * 34 and q8["diffusion_model"] < unet


def test_phases_do_not_add_up_and_tiling_bounds_the_decoder(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path)
    est = estimate(plan_of(ckpt), req(512), Switches(), table=TABLE)
    weights = sum(est.weights.values())
    vae = MB + 100_000 * 64 * 64
    assert est.peak_phase == "decode"
    assert est.ram["decode"]["vae"] == 4 * MB + vae
    assert est.peak_ram_bytes == 60 * MB + weights + vae + 12 * 512 * 512
    assert est.ram["sampling"]["diffusion_model"] == est.weights["diffusion_model"] + 10 * MB + (
        1000 * 4096 + 4 * 4096**2
    )
    tiled = estimate(plan_of(ckpt), req(512), Switches(vae_tiling=True), table=TABLE)
    assert tiled.ram["decode"]["vae"] == 4 * MB + MB + 100_000 * 32 * 32
    assert tiled.peak_ram_bytes < est.peak_ram_bytes
    small = estimate(plan_of(ckpt), req(128), Switches(vae_tiling=True), table=TABLE)
    assert small.ram["decode"] == estimate(plan_of(ckpt), req(128), table=TABLE).ram["decode"]


def test_flash_attention_mmap_batch_and_device_split(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path)
    base = estimate(plan_of(ckpt), req(1024), table=TABLE)
    flash = estimate(plan_of(ckpt), req(1024), Switches(flash_attn=True), table=TABLE)
    assert flash.ram["sampling"]["diffusion_model"] < base.ram["sampling"]["diffusion_model"]
    mapped = estimate(plan_of(ckpt), req(64), Switches(mmap=True), table=TABLE)
    assert mapped.ram["load"]["mapped"] == ckpt.stat().st_size
    two = estimate(plan_of(ckpt), req(512, batch=2), table=TABLE)
    assert two.ram["decode"]["images"] == 2 * base.ram["decode"]["images"] // 4
    assert two.ram["decode"]["heap"] == 2 * MB  # the CLIP buffer stays in the heap
    assert base.device == {} and base.peak_device_bytes == 0
    gpu = estimate(plan_of(ckpt), req(512), backend="cuda", table=TABLE)
    assert gpu.device["decode"]["vae"] == 4 * MB + MB + 100_000 * 4096
    assert set(gpu.ram["decode"]) == {"runtime", "images"}
    on_cpu = estimate(plan_of(ckpt), req(512), Switches(vae_on_cpu=True), backend="cuda",
                      table=TABLE)  # fmt: skip
    assert "vae" in on_cpu.ram["decode"] and "vae" not in on_cpu.device["decode"]
    assert on_cpu.peak_device_bytes < gpu.peak_device_bytes
    off = estimate(plan_of(ckpt), req(512), Switches(offload_to_cpu=True), backend="cuda",
                   table=TABLE)  # fmt: skip
    assert "diffusion_model" in off.device["sampling"]
    assert "diffusion_model" not in off.device["decode"]


def test_to_dict_and_unmeasured_families(tmp_path: Path) -> None:
    data = estimate(plan_of(checkpoint(tmp_path)), req(), table=TABLE).to_dict()
    assert {"peak_ram_bytes", "peak_device_bytes", "phases", "weights"} <= set(data)
    assert set(data["phases"]) == {"load", "conditioning", "sampling", "decode"}
    other = dataclasses.replace(TABLE, runners={"sd2": TABLE.runners["sd1"]})
    guess = estimate(plan_of(checkpoint(tmp_path)), req(), table=other)
    assert not guess.measured and "no measured compute costs for sd1" in guess.notes[0]


def test_choose_the_cheapest_switches_that_fit(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path)
    default = estimate(plan_of(ckpt), req(512), table=TABLE)
    tiled = estimate(plan_of(ckpt), req(512), Switches(vae_tiling=True), table=TABLE)
    roomy = choose(plan_of(ckpt), req(512), Budget(default.peak_ram_bytes), table=TABLE)
    assert roomy.changed == () and roomy.switches == Switches()
    tight = Budget(tiled.peak_ram_bytes + 1)
    chosen = choose(plan_of(ckpt), req(512), tight, table=TABLE)
    assert chosen.changed == ("vae_tiling",) and chosen.estimate.peak_ram_bytes <= tight.ram_bytes
    assert chosen.line().startswith("fit: turned on vae_tiling: peak RAM")
    with pytest.raises(DoesNotFit) as err:
        choose(plan_of(ckpt), req(512), Budget(tiled.peak_ram_bytes // 2), table=TABLE)
    smallest = tiled.peak_ram_bytes  # flash attention does not lower the decoder's peak
    assert err.value.needed_bytes == smallest
    assert str(err.value).startswith(
        f"needs at least {smallest / 2**30:.2f} GiB of RAM with vae_tiling (estimated); the budget "
        f"is {tiled.peak_ram_bytes // 2 / 2**30:.2f} GiB (--max-memory); try a smaller size, or a "
        f"quantized model (sdcpp convert {ckpt} --type q4_0)"
    )
    with pytest.raises(DoesNotFit, match="quantized model"):
        choose(plan_of(ckpt), req(128), Budget(120 * MB), table=TABLE)
    quant = choose(plan_of(ckpt), req(128), Budget(120 * MB), quantize=True, table=TABLE)
    assert quant.changed == ("wtype=q8_0",) and quant.switches.wtype == "q8_0"


def test_one_shot_frees_each_stage_and_skips_the_encoder(tmp_path: Path) -> None:
    """sd-cli's free_params_immediately: a phase holds only the weights still to be used; a
    job that encodes nothing does not load the VAE encoder (vae_decode_only)."""
    ckpt = write_sparse(tmp_path / "sd1e.safetensors", [
        ("model.diffusion_model.input_blocks.0.0.weight", (320, 4, 3, 3), "F16"),
        (f"{ATTN}.attn2.to_k.weight", (320, 768), "F16"),
        ("model.diffusion_model.big.weight", (20 * MB // 4096, 4096), "F16"),
        ("first_stage_model.decoder.conv_in.weight", (MB // 1024, 1024), "F32"),
        ("first_stage_model.encoder.conv_in.weight", (MB // 2048, 1024), "F32"),
        ("first_stage_model.quant_conv.weight", (8, 8, 1, 1), "F32"),
        ("first_stage_model.post_quant_conv.weight", (4, 4, 1, 1), "F32"),
        ("cond_stage_model.transformer.w", (3 * MB // 1024, 1024), "F16"),
    ])  # fmt: skip
    assert file_weights(ckpt, "model").vae_encoder == 2 * MB + 8 * 8 * 4
    warm = estimate(plan_of(ckpt), req(512), table=TABLE)
    once = estimate(plan_of(ckpt), req(512), one_shot=True, table=TABLE)
    assert once.one_shot and once.to_dict()["one_shot"] is True and not warm.one_shot
    decoder = 4 * MB + 4 * 4 * 4
    assert once.weights["vae"] == decoder and warm.weights["vae"] == decoder + 2 * MB + 256
    assert set(once.ram["load"]) == set(once.ram["conditioning"]) == {
        "runtime", "text_encoders", "diffusion_model", "vae"}  # fmt: skip
    assert set(once.ram["sampling"]) == {"runtime", "diffusion_model", "vae"}
    assert set(once.ram["decode"]) == {"runtime", "vae", "images"}
    assert once.ram["decode"]["vae"] == decoder + MB + 100_000 * 64 * 64
    gone = warm.weights["diffusion_model"] + warm.weights["text_encoders"] + 2 * MB + 256
    assert once.peak_ram_bytes == warm.peak_ram_bytes - gone  # both peak in decode here
    edit = estimate(plan_of(ckpt), req(512, init_image=object()), one_shot=True, table=TABLE)
    assert edit.weights["vae"] == warm.weights["vae"]  # img2img keeps the encoder
    # a warm process (a server worker) holds everything whatever it is asked
    assert estimate(plan_of(ckpt), req(512), warm=True, one_shot=True, table=TABLE).ram[
        "decode"
    ].keys() >= {"text_encoders", "diffusion_model"}
    # what fits one-shot may not fit warm: the choice follows the mode
    budget = Budget(once.peak_ram_bytes)
    assert choose(plan_of(ckpt), req(512), budget, one_shot=True, table=TABLE).changed == ()
    assert choose(plan_of(ckpt), req(512), budget, table=TABLE).changed == ("vae_tiling",)


def test_budget_parsing() -> None:
    assert parse_bytes("6G") == 6 * 2**30 and parse_bytes("1500MB") == 1500 * MB
    assert parse_bytes("1.5GiB") == int(1.5 * 2**30) and parse_bytes("4096") == 4096
    both = Budget.parse("ram=6G,vram=4G")
    assert (both.ram_bytes, both.device_bytes) == (6 * 2**30, 4 * 2**30)
    assert Budget.available().ram_bytes > 0
    for bad in ("lots", "-1G", "gpu=4G"):
        with pytest.raises(InvalidRequest, match="max_memory"):
            Budget.parse(bad)
