"""LoRAs: A1111 ``<lora:name:weight>`` prompt tags and structured ``(name or path, weight)``
lists, resolved against LoRA folders with a clear error for unknown names."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from sdcpp_service import rules
from sdcpp_service.errors import InvalidRequest, UnknownName
from sdcpp_service.types import Lora

RE_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^>:]*))?(?::[^>]*)?>")
LORA_SUFFIXES = (".safetensors", ".gguf", ".ckpt", ".pt", ".bin")


def split_prompt(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """Remove ``<lora:name:w>`` tags from ``prompt``; return the clean prompt and the tags."""
    found: list[tuple[str, float]] = []

    def take(match: re.Match[str]) -> str:
        name, raw = match.group(1).strip(), (match.group(2) or "1").strip()
        try:
            weight = float(raw)
        except ValueError:
            raise InvalidRequest(
                "prompt", f"LoRA tag <lora:{name}:{raw}> has a weight that is not a number"
            ) from None
        found.append((name, weight))
        return ""

    clean = RE_LORA_TAG.sub(take, prompt)
    return re.sub(r"\s{2,}", " ", clean).strip(), found


def parse_spec(spec: str) -> tuple[str, float]:
    """``NAME`` or ``NAME:WEIGHT`` (CLI ``--lora``); a Windows drive colon is kept."""
    return rules.split_lora(spec)


def available(dirs: Iterable[Path]) -> dict[str, Path]:
    """LoRA files in ``dirs`` (recursive), by stem and by relative path without suffix."""
    out: dict[str, Path] = {}
    for root in dirs:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in LORA_SUFFIXES and path.is_file():
                rel = path.relative_to(root).with_suffix("").as_posix()
                out.setdefault(rel, path)
                out.setdefault(path.stem, path)
    return out


def resolve(name: str, dirs: Sequence[Path]) -> Path:
    """A LoRA name (stem, relative path, or file path) → its file."""
    direct = Path(name).expanduser()
    if direct.is_file():
        return direct
    known = available(dirs)
    if name in known:
        return known[name]
    raise UnknownName("lora", name, names(dirs, known))


def names(dirs: Sequence[Path], known: dict[str, Path] | None = None) -> list[str]:
    """The LoRAs in ``dirs`` by name, for an error's choices: files whose header says LoRA."""
    found = available(dirs) if known is None else known
    return sorted({p.stem for p in found.values() if _is_lora(p)})


def _is_lora(path: Path) -> bool:
    """Whether ``path``'s header says LoRA: the choices of an unknown-LoRA error list LoRAs
    only, not every checkpoint beside them in a model folder."""
    from sdcpp_service.errors import SdcppError
    from sdcpp_service.models import inspect

    try:
        return inspect(path).kind == "lora"
    except (SdcppError, OSError):
        return False


def collect(
    prompt: str, loras: Sequence[tuple[str, float]], dirs: Sequence[Path]
) -> tuple[str, list[Lora]]:
    """Merge prompt tags and a structured list into resolved :class:`Lora` items (order kept).
    The same LoRA twice (``--lora x --lora x``, or a tag and ``--lora``) is an error, not a
    silent sum of the weights."""
    clean, tags = split_prompt(prompt)
    items: dict[str, Lora] = {}
    for name, weight in [*loras, *tags]:
        high_noise = name.startswith("|high_noise|")
        given = name.removeprefix("|high_noise|")
        key = ("H" if high_noise else "L") + str(resolve(given, dirs).resolve())
        if key in items:
            first = items[key]
            raise InvalidRequest(
                "lora",
                f"'{given}' is given twice (weights {first.weight:g} and {weight:g}); "
                "give it once with the weight you want",
            )
        items[key] = Lora(path=key[1:], weight=weight, high_noise=high_noise, name=given)
    return clean, list(items.values())


def tags(loras: Sequence[Lora]) -> str:
    """``<lora:name:weight>`` tags for ``loras`` (as A1111 writes them in the prompt)."""
    return " ".join(
        f"<lora:{'|high_noise|' if lo.high_noise else ''}{display_name(lo)}:{lo.weight:g}>"
        for lo in loras
    )


def display_name(lora: Lora) -> str:
    return lora.name or Path(lora.path).stem
