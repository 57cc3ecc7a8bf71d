"""The service's options and request vocabulary: what ``sdcpp serve`` flags set, which
component slots and kind-specific fields a request may carry."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sdcpp_service import rules

#: Component slots a request may name (resolved inside the model folders) → kinds accepted.
LOAD_SLOTS: dict[str, tuple[str, ...]] = {
    "vae": ("vae",),
    "taesd": ("taesd", "vae"),
    "control_net": ("controlnet",),
    "clip_l": ("text_encoder",),
    "clip_g": ("text_encoder",),
    "t5xxl": ("text_encoder",),
    "llm": ("text_encoder",),
    "photo_maker": ("photomaker",),
}

#: A served output file name (what the worker writes; nothing else can be asked for).
OUTPUT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}\.(png|jpg|jpeg|webp|mp4|webm|gif)$")
#: Text encoder slots a request may switch off (``"t5xxl": false``: run without it).
OPTIONAL_SLOTS = ("clip_l", "clip_g", "t5xxl", "llm")
#: Fields only some kinds take (every other field is a generation field).
KIND_ONLY: dict[str, tuple[str, ...]] = {
    "video": ("frames", "fps", "format", "end_image", "control_frames", "vace_strength"),
    "upscale": ("scale", "tile", "image"),
}
PREVIEW_MODES = rules.PREVIEW_MODES
#: Seconds between two retention passes (see ``ServerOptions.keep_jobs_hours``).
PRUNE_INTERVAL = 3600.0


@dataclass(frozen=True)
class ServerOptions:
    """Service limits and access; the CLI's flags. Zero means "no limit" only where stated."""

    api_keys: tuple[str, ...] = ()
    #: A1111-style basic credentials, ``user:pass`` each
    api_auth: tuple[str, ...] = ()
    max_queue: int = 100
    #: models to load at start, comma-separated (the first is the default model)
    preload: str = ""
    #: engine worker processes, each keeping one model warm
    workers: int = 1
    #: jobs that may run at once (0: every worker on a GPU; on the CPU, what the cores hold)
    parallel: int = 0
    #: memory budget for the warm models in GB (0: 90 % of the machine's RAM)
    max_memory_gb: float = 0.0
    max_body_bytes: int = 64 * 1024 * 1024
    #: width × height × batch of one request
    max_pixels: int = 16 * 1024 * 1024
    max_steps: int = 150
    #: decoded input image limit (decompression-bomb guard)
    max_input_pixels: int = 16 * 1024 * 1024
    worker_start_timeout: float = 120.0
    #: the job an A1111/OpenAI request waits for; past it, the request gets 504 (job goes on)
    sync_timeout: float = 3600.0
    #: finished jobs and their output files are removed this long after they finished
    #: (checked at start and hourly); 0 keeps them until ``DELETE /api/v1/jobs/{id}``
    keep_jobs_hours: float = 168.0
    #: output files may use at most this many GB: past it, the oldest finished jobs (and their
    #: files) are removed, checked as each job finishes; 0: no cap
    keep_outputs_gb: float = 0.0
    #: A1111's ``--api-server-stop``: POST /sdapi/v1/server-stop, -kill and -restart work
    api_server_stop: bool = False
    #: ``postgresql://…``: an API node of a cluster (jobs, events and outputs in PostgreSQL,
    #: run by ``sdcpp worker`` hosts); "" for the embedded default (SQLite, in-process pool)
    queue: str = ""
    #: a cluster worker silent this many seconds is lost (its job re-run once elsewhere)
    lost_after: float = 10.0

    @property
    def preloads(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.preload.split(",") if name.strip())
