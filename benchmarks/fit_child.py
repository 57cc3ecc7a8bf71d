"""One measured job for ``benchmarks/fit.py``: load, generate once, report the engine's buffers.

Run as ``python benchmarks/fit_child.py MODEL WIDTH HEIGHT BATCH [switch=1 ...]`` (``base`` as
MODEL loads only the engine library; ``one_shot=1`` loads as ``sdcpp generate`` does: each
stage's weights freed when it is done, no VAE encoder; ``esrgan=PATH`` as MODEL upscales one
WIDTH×HEIGHT image with that ESRGAN, WIDTH pixels a tile). The last stdout line is JSON: the engine's own
``params backend buffer size`` and ``compute buffer size`` lines, in bytes, in log order. The
parent reads the peak RSS of this process from ``os.wait4``.
"""

from __future__ import annotations

import json
import logging
import re
import sys

LINE = re.compile(
    r"(?P<name>[\w.-]+) (?P<what>params backend|compute) buffer size\s*[:=]\s*(?P<mb>[\d.]+)\s*MB"
)


class Grab(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.params: dict[str, int] = {}
        self.compute: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = LINE.search(record.getMessage())
        if m:
            size = int(float(m["mb"]) * 1024 * 1024)
            if m["what"] == "compute":
                self.compute.append((m["name"], size))
            else:
                self.params[m["name"]] = self.params.get(m["name"], 0) + size


def main() -> None:
    model = sys.argv[1]
    grab = Grab()
    logger = logging.getLogger("sdcpp_service.engine")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(grab)
    logger.propagate = False
    if model == "base":
        from sdcpp_service.engine.runtime import runtime

        runtime()
        print(json.dumps({"params": {}, "compute": []}))
        return
    import sdcpp_service

    width, height, batch = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if model.startswith("esrgan="):  # one WIDTH×HEIGHT image upscaled, tile = WIDTH
        from PIL import Image

        from sdcpp_service.engine.upscale import Upscaler

        up = Upscaler(model.removeprefix("esrgan="), 2, width)
        try:
            up.upscale(Image.new("RGB", (width, height), (90, 120, 200)), None)
        finally:
            up.close()
        print(json.dumps({"params": grab.params, "compute": grab.compute}))
        return
    switches = {k: v == "1" for k, v in (a.split("=", 1) for a in sys.argv[5:])}
    tiling = switches.pop("vae_tiling", False)
    one_shot = switches.pop("one_shot", False)
    if one_shot:
        switches["vae_decode_only"] = True
    with sdcpp_service.Pipeline.load(model, threads=2, one_shot=one_shot, **switches) as pipe:
        pipe.generate(
            "a fox", width=width, height=height, steps=1, seed=1, batch=batch, vae_tiling=tiling
        )
    print(json.dumps({"params": grab.params, "compute": grab.compute}))


if __name__ == "__main__":
    main()
