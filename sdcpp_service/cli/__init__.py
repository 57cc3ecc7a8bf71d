"""The ``sdcpp`` command: assembles one typer group per module; no engine import at start-up."""

from __future__ import annotations

import typer

from sdcpp_service.cli import backend, convert, generate, info, models, serve, upscale, video

app = typer.Typer(
    name="sdcpp",
    help="stable-diffusion.cpp for everyone: generate, convert, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("generate")(generate.generate)
app.command("img2img", help="Image-to-image: `generate` with --init-image (and --strength).")(
    generate.generate
)
app.command("inpaint", help="Inpainting: `generate` with --init-image and --mask.")(
    generate.generate
)
app.command("upscale")(upscale.upscale)
app.command("video")(video.video)
app.command("info")(info.info)
app.add_typer(backend.app, name="backend")
app.command("serve")(serve.serve)
app.add_typer(models.app, name="models")
app.command("pull", help="Download model files or a recipe from the Hugging Face Hub.")(
    models.pull_cmd
)
app.command("convert")(convert.convert)


def main() -> None:
    app()
