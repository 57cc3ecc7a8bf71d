"""Images in and out: decoding with limits, PNG metadata (A1111 infotext), atomic saving.

No engine import here: the C buffer conversions live in ``engine/cimage.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from sdcpp_service.errors import InvalidImage, OutputExists

#: Pixel limit for decoded inputs (a decompression-bomb guard): 64 megapixels.
MAX_PIXELS = 64 * 1024 * 1024

#: A1111's own infotext field regex (modules/infotext_utils.py).
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def load_image(
    source: str | Path | bytes | Image.Image,
    field: str,
    mode: str = "RGB",
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Decode an image (path, bytes or PIL image) safely; errors name ``field``."""
    if isinstance(source, Image.Image):
        image = source
        path: str | None = None
    else:
        path = None if isinstance(source, bytes) else str(source)
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise InvalidImage(field, f"no such file '{path}'", path)
            if p.stat().st_size == 0:
                raise InvalidImage(field, f"'{path}' is empty (0 bytes)", path)
        raw: Any = io.BytesIO(source) if isinstance(source, bytes) else path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(raw)
                w, h = image.size
                if w * h > max_pixels:
                    image.close()
                    raise InvalidImage(
                        field, f"image is {w}x{h}, over the {max_pixels} pixel limit", path
                    )
                try:
                    image.load()
                except BaseException:
                    image.close()
                    raise
        except InvalidImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            where = f"'{path}'" if path else "the image"
            raise InvalidImage(
                field, f"{where} has more pixels than the {max_pixels} pixel limit", path
            ) from None
        except UnidentifiedImageError:
            where = f"'{path}'" if path else "the data"
            raise InvalidImage(field, f"{where} is not a readable image", path) from None
        except (OSError, ValueError, SyntaxError) as exc:
            where = f"'{path}'" if path else "the data"
            raise InvalidImage(field, f"{where} could not be decoded ({exc})", path) from None
        image = ImageOps.exif_transpose(image) or image
    w, h = image.size
    if w < 1 or h < 1:
        raise InvalidImage(field, "image has no pixels", path)
    if w * h > max_pixels:
        raise InvalidImage(field, f"image is {w}x{h}, over the {max_pixels} pixel limit", path)
    if mode == "auto":  # keep transparency when there is some
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        mode = "RGBA" if has_alpha else "RGB"
    if image.mode != mode:
        if mode == "L" and image.mode in ("RGBA", "LA"):
            # A mask drawn as transparency: alpha is the mask.
            image = image.getchannel("A")
        else:
            image = image.convert(mode)
    return image


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Resize-and-crop to exactly ``width``×``height`` (centre crop, like A1111's default)."""
    if image.size == (width, height):
        return image
    return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)


def size_for_image(
    size: tuple[int, int], multiple: int, width: int | None = None, height: int | None = None
) -> tuple[int, int]:
    """The generation size for an init image of ``size``: a side that was given stays as given;
    the rest follows the image (its aspect ratio when one side is given), rounded to the
    nearest ``multiple`` (at least one), so img2img on a 64×64 image runs at 64×64, not at the
    model's default 512×512."""
    w, h = size

    def snap(value: float) -> int:
        return max(multiple, int(value / multiple + 0.5) * multiple)  # half up, not to even

    if width is not None and height is not None:
        return width, height
    if width is not None:
        return width, snap(width * h / w)
    if height is not None:
        return snap(height * w / h), height
    return snap(w), snap(h)


def _quote(value: str) -> str:
    if "," in value or ":" in value or '"' in value or "\n" in value:
        return json.dumps(value)
    return value


def lora_hashes(pairs: list[tuple[str, str | None]]) -> str | None:
    """A1111's ``Lora hashes`` value (``name: hash10, …``); LoRAs whose hash is not known yet
    are left out, and the field too when none is known."""
    known = [f"{name}: {short}" for name, short in pairs if short]
    return ", ".join(known) if known else None


def infotext(prompt: str, negative: str, fields: Mapping[str, Any]) -> str:
    """A1111 ``parameters`` text: prompt, ``Negative prompt:`` line, then ``Key: value, …``."""
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    parts = []
    for key, value in fields.items():
        if value is None or value == "":
            continue
        parts.append(f"{key}: {_quote(str(value))}")
    lines.append(", ".join(parts))
    return "\n".join(lines)


def parse_infotext(text: str) -> dict[str, str]:
    """Parse A1111 infotext back (prompt, negative prompt and every ``Key: value``)."""
    lines = text.strip().split("\n")
    last = lines[-1] if lines else ""
    params: dict[str, str] = {}
    if len(RE_PARAM.findall(last)) >= 3:
        for key, value in RE_PARAM.findall(last):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                value = json.loads(value)
            params[key.strip()] = value
        lines = lines[:-1]
    prompt: list[str] = []
    negative: list[str] = []
    target = prompt
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative
            line = line[len("Negative prompt:") :].strip()
        target.append(line)
    params["Prompt"] = "\n".join(prompt)
    params["Negative prompt"] = "\n".join(negative)
    return params


def png_info(parameters: str, extra: Mapping[str, Any] | None = None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    if extra is not None:
        info.add_text("sdcpp", json.dumps(extra, sort_keys=True, default=str))
    return info


def metadata_params(
    fmt: str, parameters: str | None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``Image.save`` arguments that carry the infotext: a PNG ``parameters`` text chunk (plus
    ``sdcpp`` JSON), or for JPEG/WebP the EXIF UserComment, where A1111 puts it."""
    if parameters is None:
        return {}
    if fmt.upper() == "PNG":
        return {"pnginfo": png_info(parameters, extra)}
    if fmt.upper() in ("JPEG", "WEBP"):
        exif = Image.Exif()
        exif[0x9286] = parameters
        return {"exif": exif.tobytes()}
    return {}


def _format_for(fp: Any, format: str | None) -> str:
    if format:
        return format.upper()
    name = os.fspath(fp) if isinstance(fp, (str, os.PathLike)) else getattr(fp, "name", "")
    Image.init()
    suffix = os.path.splitext(str(name))[1].lower()
    return Image.registered_extensions().get(suffix, "PNG")


class GeneratedImage(Image.Image):
    """A PIL image whose ``save`` keeps its metadata, as the CLI writes it: the A1111 infotext
    (``info["parameters"]``) as a PNG text chunk with the full parameters (``info["sdcpp"]``) as
    JSON, or in the EXIF UserComment for JPEG/WebP. Pass ``pnginfo=``/``exif=`` to write your
    own instead."""

    @classmethod
    def adopt(cls, image: Image.Image) -> GeneratedImage:
        """``image`` as a GeneratedImage (a plain in-memory PIL image changes class in place)."""
        if type(image) is not Image.Image:
            info = dict(image.info)
            image = image.copy()
            image.info.update(info)
        image.__class__ = cls
        return image  # type: ignore[return-value]

    def save(self, fp: Any, format: str | None = None, **params: Any) -> None:
        parameters = self.info.get("parameters")
        if isinstance(parameters, str) and not {"pnginfo", "exif"} & params.keys():
            extra = self.info.get("sdcpp")
            params.update(
                metadata_params(
                    _format_for(fp, format), parameters, extra if isinstance(extra, dict) else None
                )
            )
        super().save(fp, format, **params)


def unique_path(path: Path) -> Path:
    """``path`` if free, else ``stem-1.ext``, ``stem-2.ext``, … (never overwrite)."""
    if not path.exists():
        return path
    n = 1
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
        n += 1


#: zlib level for PNGs that are sent, not kept: at 256² level 6 costs ~33 ms of PIL time against
#: ~7 ms at 1, and level 1's file is still smaller than sd-server's (stb_image_write's)
TRANSPORT_PNG_LEVEL = 1


def save_image(
    image: Image.Image,
    path: Path,
    parameters: str | None = None,
    extra: Mapping[str, Any] | None = None,
    force: bool = False,
    png_level: int | None = None,
) -> Path:
    """Write ``image`` atomically (``*.incomplete`` then rename), with metadata if given.

    ``png_level`` is zlib's 0–9 (default: PIL's 6, for files kept on disk); a server, whose
    PNGs cross the network once, uses :data:`TRANSPORT_PNG_LEVEL`."""
    if path.exists() and not force:
        raise OutputExists(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    tmp = path.with_name(path.name + ".incomplete")
    kwargs = metadata_params(fmt, parameters, extra)
    if fmt == "PNG" and png_level is not None:
        kwargs["compress_level"] = png_level
    out = image.convert("RGB") if fmt == "JPEG" and image.mode != "RGB" else image
    try:
        Image.Image.save(out, tmp, format=fmt, **kwargs)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
