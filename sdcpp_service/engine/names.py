"""Sampler and scheduler names: the engine's own names, plus the A1111 labels clients send.

The engine names come from the engine's name tables at run time (``sd_sample_method_name``…);
this module only knows how A1111 spells them, so infotext reads the way A1111 tools expect.
"""

from __future__ import annotations

#: A1111 sampler label → engine sampler name (only those with a true equivalent).
A1111_SAMPLERS: dict[str, str] = {
    "Euler": "euler",
    "Euler a": "euler_a",
    "Heun": "heun",
    "DPM2": "dpm2",
    "DPM++ 2S a": "dpm++2s_a",
    "DPM++ 2M": "dpm++2m",
    "DPM++ 2M v2": "dpm++2mv2",
    "iPNDM": "ipndm",
    "iPNDM_v": "ipndm_v",
    "LCM": "lcm",
    "DDIM": "ddim_trailing",
    "TCD": "tcd",
    "Res Multistep": "res_multistep",
    "Res 2s": "res_2s",
    "ER SDE": "er_sde",
}

#: A1111 "Schedule type" label → engine scheduler name.
A1111_SCHEDULERS: dict[str, str] = {
    "Uniform": "discrete",
    "Karras": "karras",
    "Exponential": "exponential",
    "Align Your Steps": "ays",
    "GITS": "gits",
    "SGM Uniform": "sgm_uniform",
    "Simple": "simple",
    "Smoothstep": "smoothstep",
    "KL Optimal": "kl_optimal",
    "LCM": "lcm",
    "Bong Tangent": "bong_tangent",
}

_LEGACY_SUFFIXES = {" Karras": "karras", " Exponential": "exponential"}


def sampler_from_label(value: str) -> tuple[str, str | None]:
    """Engine sampler name (and scheduler, for legacy labels like 'DPM++ 2M Karras')."""
    text = value.strip()
    if text in A1111_SAMPLERS:
        return A1111_SAMPLERS[text], None
    for suffix, scheduler in _LEGACY_SUFFIXES.items():
        if text.endswith(suffix) and text[: -len(suffix)] in A1111_SAMPLERS:
            return A1111_SAMPLERS[text[: -len(suffix)]], scheduler
    return text.lower(), None


def scheduler_from_label(value: str) -> str:
    text = value.strip()
    if text in A1111_SCHEDULERS:
        return A1111_SCHEDULERS[text]
    if text.lower() == "automatic":
        return "default"
    return text.lower()


def sampler_label(engine_name: str) -> str:
    for label, name in A1111_SAMPLERS.items():
        if name == engine_name:
            return label
    return engine_name


def scheduler_label(engine_name: str) -> str:
    for label, name in A1111_SCHEDULERS.items():
        if name == engine_name:
            return label
    return engine_name
