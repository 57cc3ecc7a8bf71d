"""Prompt styles in A1111's ``styles.csv`` format (columns ``name``, ``prompt``,
``negative_prompt``; a ``{prompt}`` placeholder in a style marks where the user's prompt goes).

The files are read from the data dir (``styles.csv``) and from each model folder that is, or
lies in, an A1111 install (``stable-diffusion-webui/styles.csv``); the first file naming a style
wins. Applying styles works as A1111's: each style in turn either wraps the prompt (with
``{prompt}``) or is appended to it after a comma; the negative prompt likewise.

>>> apply_style("a cat", "oil painting, {prompt}, masterpiece")
'oil painting, a cat, masterpiece'
>>> apply_style("a cat", "dramatic light")
'a cat, dramatic light'
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest, UnknownName

FILE_NAME = "styles.csv"


@dataclass(frozen=True)
class Style:
    """One row of a ``styles.csv``."""

    name: str
    prompt: str
    negative_prompt: str
    path: str


def files(settings: Settings) -> list[Path]:
    """The ``styles.csv`` files that exist, in the order they are read."""
    candidates = [settings.data_dir / FILE_NAME]
    for folder in settings.model_dirs:
        candidates.append(folder / FILE_NAME)
        if folder.name == "models":  # an A1111 install's models folder: its root has the file
            candidates.append(folder.parent / FILE_NAME)
    seen: dict[Path, None] = {}
    for path in candidates:
        real = path.expanduser().resolve()
        if real.is_file():
            seen.setdefault(real, None)
    return list(seen)


def read(path: Path) -> list[Style]:
    """The styles of one file (A1111's old ``text`` column is read as ``prompt``)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle, skipinitialspace=True))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidRequest("styles", f"{path} cannot be read as a styles CSV ({exc})") from None
    out = []
    for row in rows:
        name = (row.get("name") or "").strip()
        if name:
            prompt = row.get("prompt") or row.get("text") or ""
            out.append(Style(name, prompt, row.get("negative_prompt") or "", str(path)))
    return out


def load(settings: Settings) -> dict[str, Style]:
    """Every style by name (the first file naming a style wins)."""
    found: dict[str, Style] = {}
    for path in files(settings):
        for style in read(path):
            found.setdefault(style.name, style)
    return found


def apply_style(prompt: str, style: str) -> str:
    """A1111's merge of one style's text into a prompt."""
    if "{prompt}" in style:
        return style.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style.strip()) if part)


def apply_styles(
    prompt: str,
    negative_prompt: str,
    names: Iterable[str],
    styles: dict[str, Style] | None = None,
    settings: Settings | None = None,
) -> tuple[str, str]:
    """``(prompt, negative_prompt)`` with the named styles applied in order; an unknown name
    raises :class:`~sdcpp_service.errors.UnknownName` listing the known ones."""
    wanted: Sequence[str] = [n for n in names if n]
    if not wanted:
        return prompt, negative_prompt
    known = styles if styles is not None else load(settings or Settings.from_env())
    for name in wanted:
        style = known.get(name)
        if style is None and not known:
            raise InvalidRequest(
                "styles", f"unknown style '{name}': no styles.csv in the data dir or model folders"
            )
        if style is None:
            raise UnknownName("styles", name, sorted(known))
        prompt = apply_style(prompt, style.prompt)
        negative_prompt = apply_style(negative_prompt, style.negative_prompt)
    return prompt, negative_prompt
