"""The request rules declared once (``sdcpp_service.rules``): bounds, suggestions that pass the
next check, text that can be stored, one LoRA ``name:w`` split; and the CLI refusing sizes that
cannot work before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdcpp_service import rules
from sdcpp_service.cli import app
from sdcpp_service.errors import InvalidRequest
from sdcpp_service.types import GenerateRequest, VideoRequest


def reason(call: object, *args: object) -> str:
    with pytest.raises(InvalidRequest) as err:
        call(*args)  # type: ignore[operator]
    return err.value.reason


@pytest.mark.parametrize(("value", "multiple"), [(100000, 64), (8193, 16), (9000, 32), (63, 64)])
def test_size_suggestions_pass_every_check(value: int, multiple: int) -> None:
    text = reason(rules.check_size, "width", value, multiple)
    suggested = [int(w) for w in text.rsplit(" ", 1)[-1].split(" or ")]
    for size in suggested:
        rules.check_size("width", size, multiple)  # raises if the suggestion is no good
    if value > rules.MAX_SIDE:
        assert f"over the {rules.MAX_SIDE} pixel limit" in text


def test_pixel_limit_names_the_limit_and_sizes_that_fit() -> None:
    text = reason(rules.check_pixels, 8192, 8192, 64)
    assert f"over the {rules.MAX_PIXELS} pixel limit" in text
    assert "1024x1024 × 64 fits" in text and "8192x8192 × 1 fits" in text
    rules.check_pixels(1024, 1024, 64)
    rules.check_pixels(8192, 8192, 1)


def test_frames_are_4k_plus_1_within_one_bound() -> None:
    assert rules.KIND_FIELDS["frames"].hi == rules.MAX_FRAMES
    rules.check_frames(rules.MAX_FRAMES)
    assert "frame limit" in reason(rules.check_frames, rules.MAX_FRAMES + 4)
    assert "nearest valid count is 9" in reason(rules.check_frames, 8)


def test_declared_fields_exist_on_the_request_types_with_defaults_inside_bounds() -> None:
    for table, request in ((rules.GENERATION, GenerateRequest), (rules.KIND_FIELDS, VideoRequest)):
        for name, rule in table.items():
            if name in ("scale", "tile", "format"):
                continue  # upscale / output fields, not on the dataclass
            value = rules.default(request, name) if name != "prompt" else ""
            assert rules.coerce(name, value, rule) == value, name


def test_text_must_be_storable_and_bounded() -> None:
    assert "lone surrogate" in reason(rules.check_text, "prompt", "a \ud800 cat")
    text = reason(rules.check_text, "prompt", "x" * (rules.MAX_PROMPT_CHARS + 1))
    assert str(rules.MAX_PROMPT_CHARS) in text and "xxxx" not in text  # never echoed back
    assert rules.parse({"prompt": "ok"}) == ({"prompt": "ok"}, {})


def test_huge_and_odd_numbers_are_field_errors() -> None:
    values, errors = rules.parse({"steps": 10**400, "seed": True, "cfg_scale": float("nan")})
    assert values == {} and set(errors) == {"steps", "seed", "cfg_scale"}
    assert "401-digit" in errors["steps"] and "10" * 10 not in errors["steps"]


def test_one_lora_split() -> None:
    assert rules.split_lora("detail:0.5") == ("detail", 0.5)
    assert rules.split_lora("a:b:0.5") == ("a:b", 0.5)
    assert rules.split_lora("C:/loras/x.safetensors") == ("C:/loras/x.safetensors", 1.0)
    assert "between -10 and 10" in reason(rules.split_lora, "detail:1e9")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-W", "8192", "-H", "8192", "--batch", "64"], "1024x1024 × 64 fits"),
        (["-W", "100000"], "use 8192"),
    ],
)
def test_cli_refuses_sizes_that_cannot_work_before_loading(
    tmp_path: Path, args: list[str], says: str
) -> None:
    missing = tmp_path / "never-read.safetensors"  # refused before the model is even looked at
    result = CliRunner().invoke(app, ["generate", "x", "-m", str(missing), *args])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.output
