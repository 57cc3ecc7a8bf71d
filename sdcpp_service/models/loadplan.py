"""A model name or path plus component overrides → the engine's load options (the plan of
:mod:`~sdcpp_service.models.assemble`, in :class:`~sdcpp_service.types.LoadOptions` form), and
the Wan2.2 A14B high-noise partner found by name."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest
from sdcpp_service.types import COMPONENT_SLOTS, LoadOptions

_LOAD_FIELDS = {f.name for f in dataclasses.fields(LoadOptions)}
MODEL_SUFFIXES = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin")
#: LoadOptions fields the model planner does not resolve (passed through as given).
log = logging.getLogger("sdcpp_service.models")
_PASS_THROUGH = ("high_noise_diffusion_model", "llm_vision")


def plan_model(
    model: str | Path,
    settings: Settings,
    slot: str | None = None,
    **overrides: Any,
) -> tuple[LoadOptions, Any]:
    """A model (path or catalog name) plus component overrides -> load options and its info.

    Detection reads the file's header and picks the loader slot; missing components (VAE, text
    encoders) are found in the catalog or reported as ``MissingComponent``."""
    from sdcpp_service.models.assemble import plan

    unknown = set(overrides) - _LOAD_FIELDS
    if unknown:
        raise InvalidRequest(sorted(unknown)[0], "not a load option of Pipeline.load")
    if slot not in (None, "model", "diffusion_model"):
        raise InvalidRequest("slot", f"'{slot}' is not model or diffusion_model")
    comps = {k: str(v) for k, v in overrides.items() if k in COMPONENT_SLOTS and v}
    #: ``t5xxl=False`` (any component set to False): run without it, even if the model needs it
    without = {k: None for k, v in overrides.items() if k in COMPONENT_SLOTS and v is False}
    passed = {k: comps.pop(k) for k in _PASS_THROUGH if k in comps}
    for main in ("model", "diffusion_model"):
        if main in comps:
            raise InvalidRequest(main, "give the main model as the first argument")
    given = Path(model).expanduser()
    if given.suffix.lower() in MODEL_SUFFIXES and not given.exists():
        raise InvalidRequest("model", f"no such model file '{model}'")
    load_plan = plan(model, {**comps, **without}, settings)
    fields: dict[str, Any] = {}
    for arg, path in load_plan.slots.items():
        key = arg.removesuffix("_path")
        if key in _LOAD_FIELDS:
            fields[key] = path
    if slot is not None and slot not in fields:  # the user forces the other loader slot
        other = "diffusion_model" if slot == "model" else "model"
        fields[slot] = fields.pop(other)
    fields.update(passed)
    if "high_noise_diffusion_model" not in overrides and str(load_plan.info.arch).startswith("wan"):
        partner = high_noise_partner(load_plan.info.path)
        if partner is not None:  # a Wan2.2 A14B pair, found by the release's naming
            log.info("using the high-noise model %s", partner.name)
            fields["high_noise_diffusion_model"] = str(partner)
    fields.update({k: v for k, v in overrides.items() if k not in COMPONENT_SLOTS})
    if "embeddings" in fields:
        fields["embeddings"] = tuple(str(e) for e in fields["embeddings"])
    options = LoadOptions(**fields)
    if options.control_net and options.main_path:
        from sdcpp_service.models.addons import check_control_net

        check_control_net(options.main_path, options.control_net)
    if options.photo_maker and options.main_path:
        from sdcpp_service.models.addons import check_photo_maker

        check_photo_maker(options.main_path, options.photo_maker)
    return options, load_plan.info


_LOW_NOISE = re.compile(r"(low)([_ .-]?noise)", re.IGNORECASE)


def high_noise_partner(model: str | Path) -> Path | None:
    """The Wan2.2 A14B high-noise file beside a low-noise one, by the release's naming
    (``wan2.2_t2v_low_noise_14B_fp8.safetensors`` → ``…high_noise…``, ``LowNoise`` → ``HighNoise``)."""
    path = Path(model)
    match = _LOW_NOISE.search(path.name)
    if match is None:
        return None
    low = match.group(1)
    high = "HIGH" if low.isupper() else "High" if low[0].isupper() else "high"
    name = path.name[: match.start()] + high + match.group(2) + path.name[match.end() :]
    partner = path.with_name(name)
    return partner if partner.is_file() else None
