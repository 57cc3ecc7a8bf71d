"""Where ``sdcpp generate`` writes its images: refused before any work when the name cannot be
written, numbered when a name we chose is taken, overwritten only with ``--force``."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_OUTPUT = "output.png"


def is_folder(output: str) -> bool:
    return output.endswith(("/", "\\")) or Path(output).is_dir()


def check_output(output: str | None, count: int, force: bool) -> None:
    """Refuse, before any work, an output that cannot be written: an unknown extension, or an
    existing file given by name without ``force`` (the same rule as ``sdcpp video``)."""
    from sdcpp_service.errors import InvalidRequest, OutputExists

    if output is None or is_folder(output):
        return
    path = Path(output)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InvalidRequest(
            "output",
            f"cannot write an image as '{path.name}'; use a name ending in "
            f"{', '.join(IMAGE_SUFFIXES)}, or a folder ending in /",
        )
    for candidate in _numbered(path, count):
        if candidate.exists() and not force:
            raise OutputExists(candidate)


def _numbered(path: Path, count: int) -> list[Path]:
    return [
        path if i == 0 else path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(count)
    ]


def output_paths(output: str | None, count: int, seeds: list[int], force: bool) -> list[Path]:
    """Where each image goes. Names we choose (``output.png``, ``DIR/sdcpp-SEED.png``) are
    numbered when taken; a file named by the user is overwritten only with ``force``
    (:func:`check_output` refused it before the run otherwise). ``-o new/dir/`` is created."""
    from sdcpp_service.engine.images import unique_path

    if output is not None and is_folder(output):
        folder = Path(output)
        paths = [folder / f"sdcpp-{seed}.png" for seed in seeds]
    elif output is not None:
        return _numbered(Path(output), count)
    else:
        paths = _numbered(Path(DEFAULT_OUTPUT), count)
    if force:
        return paths
    chosen: list[Path] = []
    for candidate in paths:
        candidate = unique_path(candidate)
        while candidate in chosen:
            candidate = unique_path(candidate.with_name(candidate.stem + "-1" + candidate.suffix))
        chosen.append(candidate)
    return chosen
