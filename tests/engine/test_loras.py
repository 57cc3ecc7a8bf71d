from __future__ import annotations

from pathlib import Path

import pytest

from sdcpp_service.engine import loras
from sdcpp_service.errors import InvalidRequest, UnknownName


def test_split_prompt_removes_tags_and_keeps_weights() -> None:
    clean, tags = loras.split_prompt("a cat <lora:detail:0.6> in a hat <lora:style>")
    assert clean == "a cat in a hat"
    assert tags == [("detail", 0.6), ("style", 1.0)]


def test_bad_weight_is_a_field_error() -> None:
    with pytest.raises(InvalidRequest) as err:
        loras.split_prompt("x <lora:detail:lots>")
    assert err.value.field == "prompt"


def test_parse_spec() -> None:
    assert loras.parse_spec("detail:0.5") == ("detail", 0.5)
    assert loras.parse_spec("detail") == ("detail", 1.0)
    assert loras.parse_spec("C:/loras/x.safetensors") == ("C:/loras/x.safetensors", 1.0)
    with pytest.raises(InvalidRequest):
        loras.parse_spec("detail:abc")


def test_collect_resolves_names_and_refuses_repeats(tmp_path: Path) -> None:
    (tmp_path / "loras" / "sub").mkdir(parents=True)
    a = tmp_path / "loras" / "detail.safetensors"
    b = tmp_path / "loras" / "sub" / "style.gguf"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    (tmp_path / "loras" / "alias.safetensors").symlink_to(a)
    clean, items = loras.collect("p <lora:alias:0.25> <lora:sub/style:1>", [], [tmp_path / "loras"])
    assert clean == "p"
    assert [(Path(i.path).name, i.weight, i.name) for i in items] == [
        ("detail.safetensors", 0.25, "alias"),  # the file, and the name the user gave
        ("style.gguf", 1.0, "sub/style"),
    ]
    assert loras.tags(items) == "<lora:alias:0.25> <lora:sub/style:1>"
    for prompt, given in (
        ("p", [("detail", 0.5), ("detail", 0.5)]),
        ("p <lora:alias:1>", [("detail", 1)]),
    ):
        with pytest.raises(InvalidRequest, match="is given twice"):
            loras.collect(prompt, given, [tmp_path / "loras"])


def test_unknown_lora_lists_loras_only(tmp_path: Path) -> None:
    from tests.models import layouts as L
    from tests.models.corpus import write_safetensors

    mod = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    write_safetensors(tmp_path / "detail.safetensors",
                      {f"{mod}.lora_down.weight": (4, 640), f"{mod}.lora_up.weight": (640, 4)})  # fmt: skip
    write_safetensors(tmp_path / "ae.safetensors", L.kl_vae(4))  # beside it: not a LoRA
    with pytest.raises(UnknownName) as err:
        loras.collect("p <lora:detial:1>", [], [tmp_path])
    assert "unknown lora 'detial'; did you mean detail? (known: detail)" in str(err.value)
