from __future__ import annotations

import re

from sdcpp_service.engine.images import RE_PARAM, infotext, parse_infotext

# A1111's regex, copied verbatim from modules/infotext_utils.py
A1111_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def test_our_regex_is_a1111s() -> None:
    assert RE_PARAM.pattern == A1111_RE.pattern


def test_round_trip_with_a1111_regex() -> None:
    fields = {
        "Steps": 20,
        "Sampler": "Euler a",
        "Schedule type": "Karras",
        "CFG scale": 7.0,
        "Seed": 42,
        "Size": "512x768",
        "Model hash": "0123456789",
        "Model": "sd15",
        "Lora hashes": "a: 1111111111, b: 2222222222",
    }
    text = infotext("a fox, in snow", "blurry", fields)
    assert text.splitlines()[1] == "Negative prompt: blurry"
    parsed = dict(A1111_RE.findall(text.splitlines()[-1]))
    assert parsed["Steps"] == "20"
    assert parsed["Sampler"] == "Euler a"
    assert parsed["Size"] == "512x768"
    assert parsed["Lora hashes"] == '"a: 1111111111, b: 2222222222"'
    back = parse_infotext(text)
    assert back["Prompt"] == "a fox, in snow"
    assert back["Negative prompt"] == "blurry"
    assert back["Lora hashes"] == "a: 1111111111, b: 2222222222"
    assert back["Seed"] == "42"


def test_no_negative_line_when_empty() -> None:
    text = infotext("p", "", {"Steps": 1, "Seed": 2, "Size": "64x64"})
    assert "Negative prompt" not in text
    assert parse_infotext(text)["Negative prompt"] == ""
