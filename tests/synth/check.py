"""Load kit models in the installed engine and report layout drift (run after an engine upgrade).

    python -m tests.synth.check              # every default model
    python -m tests.synth.check sd1 flux

For each model it prints the version the engine detects (vs the table's) and every log line about
"unknown tensor", "not in model file" or "wrong shape": those name exactly what a layout must
gain, lose or reshape. Fix the manifest JSON (or re-read it off the engine) and re-import it with
``python -m tests.synth.manifests import``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .enginelog import EngineLog
from .kit import Kit
from .models import default_models, model

# Components that only load next to a base model.
WITH = {"taesd": ["sdxs"], "controlnet_sd1": ["sd1"], "lora_sd1": ["sdxs"]}


def check(name: str, kit: Kit, threads: int) -> bool:
    import stable_diffusion_cpp

    spec = model(name)
    kwargs: dict[str, object] = {}
    for other in WITH.get(name, []):
        kwargs |= kit.engine_kwargs(other)
    if name == "lora_sd1":
        kwargs["lora_model_dir"] = str(kit.path(name).parent)
    else:
        kwargs |= kit.engine_kwargs(name)
    log = EngineLog().install()
    try:
        sd = stable_diffusion_cpp.StableDiffusion(verbose=True, n_threads=threads, **kwargs)
        try:
            if name == "esrgan_x4":
                from PIL import Image

                sd.upscale(Image.new("RGB", (8, 8)), upscale_factor=4)
            else:
                size = 16 if name.startswith("flux") else 64
                prompt = f"x<lora:{kit.path(name).stem}:1>" if name == "lora_sd1" else "x"
                sd.generate_image(prompt=prompt, width=size, height=size, sample_steps=1)
        finally:
            sd.close()
    finally:
        log.uninstall()
    bad = log.matching(
        "unknown tensor", "not in model file", "wrong shape", "unused lora", "Only ("
    )
    versions = log.versions()
    expected = model(WITH[name][0]).version if name in WITH else spec.version
    ok = not bad and not log.errors() and (not expected or versions == [expected])
    print(f"{'ok  ' if ok else 'FAIL'} {name}: version {versions} (expected {expected!r})")
    for line in bad + log.errors():
        print(f"     {line}")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.synth.check")
    parser.add_argument("names", nargs="*")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    kit = Kit()
    results = [check(name, kit, args.threads) for name in args.names or default_models()]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
