"""The CLI's request options read the rules (sdcpp_service/rules.py): their help shows each
rule's bounds, and a value out of bounds is refused with the server's own wording, before any
model is looked for."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sdcpp_service import rules
from sdcpp_service.cli import app

#: command → (flag, rules field) of every option that carries a request field
RULED = {
    "generate": [("--width", "width"), ("--height", "height"), ("--steps", "steps"),
                 ("--cfg", "cfg_scale"), ("--guidance", "guidance"), ("--seed", "seed"),
                 ("--batch", "batch"), ("--clip-skip", "clip_skip"), ("--eta", "eta"),
                 ("--strength", "strength"), ("--control-strength", "control_strength"),
                 ("--hires-scale", "hires_scale"), ("--hires-steps", "hires_steps"),
                 ("--hires-denoise", "hires_denoise")],
    "video": [("--frames", "frames"), ("--fps", "fps"), ("--width", "width"),
              ("--steps", "steps"), ("--cfg", "cfg_scale"), ("--flow-shift", "flow_shift"),
              ("--seed", "seed"), ("--vace-strength", "vace_strength")],
    "upscale": [("--scale", "scale"), ("--tile", "tile")],
}  # fmt: skip


def _params(command: str) -> dict[str, Any]:
    group: Any = typer.main.get_command(app)  # typer's own click group
    found = group.commands[command]
    return {opt: p for p in found.params for opt in p.opts}


@pytest.mark.parametrize("command", sorted(RULED))
def test_help_shows_the_rules_bounds(command: str) -> None:
    params = _params(command)
    for flag, field in RULED[command]:
        bounds = rules.describe(rules.rule_of(field))
        assert bounds and f"[{bounds}]" in str(getattr(params[flag], "help", "")), (flag, bounds)


def _outside(rule: rules.Rule) -> str:
    value = (rule.hi or 0) + (1 if rule.kind is int else 0.5)
    return str(int(value) if rule.kind is int else value)


@pytest.mark.parametrize("command", sorted(RULED))
def test_out_of_bounds_is_refused_by_the_rule(command: str) -> None:
    args = {"generate": ["generate", "x"], "video": ["video", "x"], "upscale": ["upscale", "in.png"]}  # fmt: skip
    for flag, field in RULED[command]:
        rule = rules.rule_of(field)
        value = _outside(rule)
        result = CliRunner().invoke(app, [*args[command], "-m", "no-such-model", flag, value])
        assert result.exit_code == 2, (flag, result.output)
        text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
        try:
            rules.coerce(field, float(value) if rule.kind is float else int(value), rule)
        except Exception as exc:
            reason = getattr(exc, "reason", str(exc))
        else:
            raise AssertionError(f"{value} passes {field}'s rule")
        # one line, as every refusal (item 11 of issue 12: a side past the limit names one inside)
        assert text.startswith(f"error: {flag}: ") and result.output.count("\n") == 1, text
        if field in ("width", "height"):
            assert "pixel limit; use 8192" in text, text
        else:
            assert reason in text, (flag, text)
        assert "no-such-model" not in text  # refused before the model is looked for
