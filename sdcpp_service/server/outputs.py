"""What a worker writes and measures: a job's output files (atomically, with their infotext),
preview frames as PNG, a process's resident memory; which files on disk belong to which job.

Every file a job leaves in the outputs folder is named after it (``<job id>-<n>.png``, its
converted copies ``<job id>-<n>.webp``, a ``….incomplete`` being written): the name says whose it
is, so deleting a job, the retention and the disk cap remove all of them, and a file whose job
is gone is swept at start.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from sdcpp_service.engine.base import EngineJob, JobOutput, VideoJob
from sdcpp_service.engine.images import TRANSPORT_PNG_LEVEL
from sdcpp_service.errors import StorageFull


def rss(pid: int | None) -> int:
    """The resident memory of a process in bytes (Linux ``/proc``; 0 elsewhere)."""
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def save_outputs(
    result: JobOutput, job: EngineJob, outputs: Path, png_level: int = TRANSPORT_PNG_LEVEL
) -> dict[str, Any]:
    """Write the job's files and describe them; on a full disk none of its files stay and
    :class:`~sdcpp_service.errors.StorageFull` is raised. PNGs are compressed at zlib's
    ``png_level`` (``SDCPP_PNG_LEVEL``; a server's PNGs are sent once, so it is low)."""
    from sdcpp_service.server.storage import is_full

    try:
        if isinstance(job, VideoJob):
            return save_video(result, job, outputs)
        return save_images(result, job, outputs, png_level)
    except Exception as exc:
        remove_files(job_files(outputs).get(job.id, []))
        if is_full(exc):
            raise StorageFull(outputs) from exc
        raise


def save_images(
    result: JobOutput, job: EngineJob, outputs: Path, png_level: int = TRANSPORT_PNG_LEVEL
) -> dict[str, Any]:
    """Write each image as ``<job id>-<n>.png`` (atomically, with infotext); describe them."""
    from sdcpp_service.engine.images import save_image

    names: list[str] = []
    infotexts: list[str] = []
    for i, image in enumerate(result.images):
        name = f"{job.id}-{i}.png"
        text = str(image.info.get("parameters", ""))
        meta = image.info.get("sdcpp")
        save_image(image, outputs / name, text, meta, force=True, png_level=png_level)
        names.append(name)
        infotexts.append(text)
    first = result.images[0].size if result.images else (0, 0)
    return {
        "outputs": names,
        "seeds": list(result.seeds),
        "infotexts": infotexts,
        "params": result.params,
        "timings": result.timings,
        "width": first[0],
        "height": first[1],
    }


def save_video(result: JobOutput, job: VideoJob, outputs: Path) -> dict[str, Any]:
    """Write the frames as one ``<job id>-0.<format>`` video (atomically, parameters inside)."""
    from sdcpp_service.engine.videofile import save_video as write

    name = f"{job.id}-0.{job.format}"
    first = result.images[0]
    text = str(first.info.get("parameters", ""))
    fps = float(result.fps or result.params.get("fps") or 16.0)
    write(result.images, outputs / name, fps, text, first.info.get("sdcpp"), force=True)
    return {
        "outputs": [name],
        "seeds": list(result.seeds),
        "infotexts": [text],
        "params": result.params,
        "timings": result.timings,
        "width": first.width,
        "height": first.height,
        "frames": len(result.images),
        "fps": fps,
    }


def preview_png(image: Image.Image) -> bytes:
    """A preview frame as a quickly compressed PNG (it crosses the pipe and goes to clients)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def job_of(name: str) -> str:
    """The id of the job an output file belongs to (the name up to its first ``-`` or ``.``)."""
    cut = [i for i in (name.find("-"), name.find(".")) if i > 0]
    return name[: min(cut)] if cut else ""


def job_files(outputs: Path) -> dict[str, list[Path]]:
    """Every file in the outputs folder, by the job it belongs to."""
    found: dict[str, list[Path]] = {}
    try:
        entries = list(os.scandir(outputs))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and job_of(entry.name):
            found.setdefault(job_of(entry.name), []).append(Path(entry.path))
    return found


def remove_files(paths: Iterable[Path]) -> int:
    """Delete the files (gone already is fine); returns the bytes freed."""
    freed = 0
    for path in paths:
        try:
            size = path.stat().st_size
            path.unlink()
            freed += size
        except FileNotFoundError:
            pass
    return freed
