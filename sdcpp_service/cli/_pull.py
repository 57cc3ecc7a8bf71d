"""``--pull``: a recipe name given to ``-m`` that is not in the model folders yet is fetched
(with ``--pull``, or after asking on a terminal), so a first image is one command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

PullOpt = Annotated[
    bool,
    typer.Option(
        "--pull", help="Download the model first if it is a recipe (`sdcpp pull`) not yet here."
    ),
]


def ensure_model(model: str | None, pull: bool, kind: str = "model") -> None:
    """Fetch recipe ``model`` when the catalog lacks it; refuse in one line when not allowed."""
    from sdcpp_service.config import Settings
    from sdcpp_service.errors import InvalidRequest, UnknownName
    from sdcpp_service.models import scan
    from sdcpp_service.models.hub import pull as pull_files
    from sdcpp_service.models.recipes import RECIPES, recipe_of

    recipe = None if model is None else recipe_of(model)
    if model is None or recipe is None or Path(model).expanduser().exists():
        return
    settings = Settings.from_env()
    try:
        scan(settings).find(model, kind=kind)
        return
    except UnknownName:
        pass
    files = ", ".join(f.local_name for f in RECIPES[recipe])
    if not pull and sys.stdin.isatty() and sys.stderr.isatty():
        pull = typer.confirm(
            f"'{model}' is not in the model folders; download it ({files}) "
            "from the Hugging Face Hub?",
            err=True,
        )
    if not pull:
        raise InvalidRequest(
            "model",
            f"'{model}' is not in the model folders yet; `sdcpp pull {recipe}` downloads it "
            f"({files}), or add --pull",
        )
    for r in pull_files(recipe, (), settings):
        state = "downloaded" if r.downloaded else "present"
        typer.echo(f"{state:<10} {r.path}", err=True)
