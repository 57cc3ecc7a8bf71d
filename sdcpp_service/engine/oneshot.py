"""The one-shot video call of the library and the CLI: load a Wan model, make one video,
optionally write it, unload. ``generate_video("a fox running", "wan2.1_t2v_1.3B")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.engine.pipeline import Pipeline
from sdcpp_service.engine.video import _ALIASES, _LOAD_FIELDS, render_video
from sdcpp_service.engine.videofile import video_target
from sdcpp_service.engine.videogen import check_high_noise, check_size
from sdcpp_service.models.loadplan import plan_model
from sdcpp_service.rules import check_frames, family_of
from sdcpp_service.types import ProgressCallback, VideoResult


def generate_video(
    prompt: str,
    model: str | Path,
    output: str | Path | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
    settings: Settings | None = None,
    **params: Any,
) -> VideoResult:
    """Load ``model`` (path or catalog name), make one video, optionally write it, unload.

    Keyword arguments are :class:`~sdcpp_service.types.VideoRequest` fields (``frames``, ``fps``,
    ``width``, ``height``, ``steps``, ``cfg``, ``seed``, ``init_image``, ``end_image``,
    ``control_frames``, ``loras``…) and load options / components (``vae``, ``t5xxl``,
    ``clip_vision``, ``high_noise_model``, ``threads``…; ``t5xxl=False`` runs without a text
    encoder). ``output``: ``*.mp4|.webm|.gif|.webp`` or a folder (``"frames/"``) of PNGs.
    """
    from sdcpp_service.models import hash_file

    settings = settings or Settings.from_env()
    load: dict[str, Any] = {}
    for key in list(params):
        name = _ALIASES.get(key, key)
        if name in _LOAD_FIELDS:
            load[name] = params.pop(key)
    if output is not None:
        video_target(output)  # a bad name fails before anything loads
    high = load.get("high_noise_diffusion_model")
    if high and not Path(high).expanduser().exists():  # a catalog name, like the main model
        from sdcpp_service.models import scan

        entry = scan(settings).find(str(high), kind="model", label="high_noise_model")
        load["high_noise_diffusion_model"] = entry.path
    slot = load.pop("slot", None)
    options, info = plan_model(model, settings, slot=slot, **load)
    family = family_of(info)
    check_high_noise(options, info)
    for key, value in params.items():  # the cheap checks, before a (long) load
        key = _ALIASES.get(key, key)
        if key == "frames" and value is not None:
            check_frames(value)
        elif key in ("width", "height") and value is not None:
            check_size(key, value, family)

    def sha256(path: str) -> str:
        return hash_file(path, settings).sha256

    # one video per call: each stage's weights are freed when it is done, as sd-cli does
    with Pipeline(options, settings, hash_fn=sha256, info=info, one_shot=True) as pipe:
        return render_video(pipe, prompt, output, force=force, progress=progress, **params)
