"""``sdcpp info``: versions, engine build, cores, folders."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from sdcpp_service._version import __version__
from sdcpp_service.cli._errors import handle_errors
from sdcpp_service.config import Settings, physical_cores


def collect(settings: Settings) -> dict[str, Any]:
    from sdcpp_service.engine import sdcpp

    engine = sdcpp.system_info()
    return {
        "version": __version__,
        **engine,
        "physical_cores": engine.get("physical_cores") or physical_cores(),
        "default_threads": settings.default_threads,
        "data_dir": str(settings.data_dir),
        "model_dirs": [str(p) for p in settings.model_dirs],
    }


def _gib(n: int) -> str:
    return f", {n / 2**30:.1f} GiB" if n else ""


def device_lines(data: dict[str, Any]) -> list[str]:
    """The devices the engine sees, and the one it runs on (with a note when a GPU build finds
    no GPU, which is the answer to "is my GPU used?")."""
    devices = data.get("devices") or []
    lines = [
        f"{'devices' if i == 0 else '':18}{d['name']}: {d['description']} ({d['type']}"
        f"{_gib(d['memory_total'])})"
        for i, d in enumerate(devices)
    ] or [f"{'devices':18}none found"]
    used = data.get("device")
    text = f"{used['name']} ({used['description']})" if used else "none"
    if data["backend"] != "cpu" and (not used or used["type"] == "cpu"):
        text += f": no {data['backend']} device found, so the engine computes on the CPU"
    return [*lines, f"{'engine runs on':18}{text}"]


@handle_errors
def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show the package and engine versions, the backend the engine was built with, the devices it
    sees and the one it runs on, CPU features, and folders."""
    data = collect(Settings.from_env())
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    simd = [k for k, v in data["features"].items() if v]
    lines = [
        f"sdcpp-service     {data['version']}",
        f"bindings          stable-diffusion-cpp-python {data['bindings_version']}",
        f"engine            {data['engine_version']} (commit {data['engine_commit']}"
        + (
            ""
            if data.get("engine_source") in (None, "library")
            else f", from the {data['engine_source']}"
        )
        + ")",
        f"backend           {data['backend']} (compiled in: {', '.join(data['backends'])})",
        *device_lines(data),
        f"cpu features      {' '.join(simd) or '-'}",
        f"physical cores    {data['physical_cores']}",
        f"default threads   {data['default_threads']}",
        f"data dir          {data['data_dir']}",
        f"model dirs        {', '.join(data['model_dirs'])}",
    ]
    typer.echo("\n".join(lines))
