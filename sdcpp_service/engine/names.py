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

#: A1111 samplers the engine has no sampler of that name for → (the engine sampler that runs
#: instead, the scheduler A1111 pairs with it or None, why it is the nearest). The README's
#: A1111 section shows this table.
A1111_NEAREST: dict[str, tuple[str, str | None, str]] = {
    "DPM++ SDE": ("dpm++2s_a", "karras", "the same single-step second-order DPM-Solver++, "
                  "with ancestral noise in place of Brownian SDE noise"),
    "DPM++ 2M SDE": ("er_sde", "exponential", "a stochastic multistep solver of the reverse "
                     "SDE, as DPM++ 2M SDE is"),
    "DPM++ 2M SDE Heun": ("er_sde", "exponential", "as DPM++ 2M SDE (the Heun variant only "
                          "changes the multistep correction)"),
    "DPM++ 3M SDE": ("er_sde", "exponential", "a stochastic multistep reverse-SDE solver; "
                     "the engine has no third-order one"),
    "DPM2 a": ("dpm++2s_a", "karras", "DPM-Solver++ 2S ancestral is the improved form of the "
               "two-stage ancestral DPM2 step"),
    "DPM fast": ("dpm++2m", None, "DPM-Solver++ multistep improves on DPM-Solver's fixed "
                 "low-order steps"),
    "DPM adaptive": ("dpm++2m", None, "no adaptive step-size sampler in the engine; runs the "
                     "steps asked for with DPM-Solver++ 2M"),
    "LMS": ("ipndm", None, "iPNDM is a fourth-order linear multistep (Adams-Bashforth) method "
            "like LMS, with a better warm start"),
    "PLMS": ("ipndm", None, "PLMS is the pseudo-linear multistep family that iPNDM improves on"),
    "UniPC": ("dpm++2m", None, "UniPC's predictor is a DPM-Solver++ style multistep update; "
              "the engine has no corrector step"),
    "Restart": ("heun", "karras", "Restart runs Heun steps between its restarts"),
    "DDIM CFG++": ("ddim_trailing", None, "DDIM without the CFG++ guidance variant"),
}  # fmt: skip

#: A1111's own sampler list (1.10), in its order: each runs as itself or as its nearest above.
A1111_NAMES = (
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart",
    "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM",
)  # fmt: skip

#: A1111's alternative names (``k_euler_a``…) → its label.
A1111_ALIASES: dict[str, str] = {
    "k_dpmpp_2m": "DPM++ 2M", "k_dpmpp_sde": "DPM++ SDE", "k_dpmpp_2m_sde": "DPM++ 2M SDE",
    "k_dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun", "k_dpmpp_2s_a": "DPM++ 2S a",
    "k_dpmpp_3m_sde": "DPM++ 3M SDE", "k_euler_a": "Euler a", "k_euler_ancestral": "Euler a",
    "k_euler": "Euler", "k_lms": "LMS", "k_heun": "Heun", "k_dpm_2": "DPM2",
    "k_dpm_2_a": "DPM2 a", "k_dpm_fast": "DPM fast", "k_dpm_ad": "DPM adaptive",
    "restart": "Restart", "ddim": "DDIM", "ddim_cfgpp": "DDIM CFG++", "plms": "PLMS",
    "unipc": "UniPC", "k_lcm": "LCM",
}  # fmt: skip

_LEGACY_SUFFIXES = {" Karras": "karras", " Exponential": "exponential"}


def _a1111(text: str) -> tuple[str, str | None] | None:
    label = A1111_ALIASES.get(text.lower(), text)
    if label in A1111_SAMPLERS:
        return A1111_SAMPLERS[label], None
    if label in A1111_NEAREST:
        return A1111_NEAREST[label][:2]
    return None


def sampler_from_label(value: str) -> tuple[str, str | None]:
    """Engine sampler name (and scheduler, for legacy labels like 'DPM++ 2M Karras' and for the
    A1111 samplers mapped to their nearest engine sampler)."""
    text = value.strip()
    found = _a1111(text)
    if found is not None:
        return found
    for suffix, scheduler in _LEGACY_SUFFIXES.items():
        base = _a1111(text[: -len(suffix)]) if text.endswith(suffix) else None
        if base is not None:
            return base[0], scheduler
    return text.lower(), None


def a1111_aliases(engine_name: str) -> list[str]:
    """The A1111 names (and ``k_*`` aliases) that run this engine sampler."""
    labels = [k for k, v in A1111_SAMPLERS.items() if v == engine_name]
    labels += [k for k, v in A1111_NEAREST.items() if v[0] == engine_name]
    aliases = [a for a, label in A1111_ALIASES.items() if label in labels]
    return [engine_name, *labels[1:], *aliases]


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
