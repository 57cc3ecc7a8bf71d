from __future__ import annotations

__version__ = "0.1.0"
#: The bindings version this package is written against (its C structs are called directly).
PINNED_BINDINGS = "0.4.7"
#: The stable-diffusion.cpp release each bindings version vendors: (``git describe``, commit).
#: A pip build from the sdist has no ``.git``, so the library reports ``unknown`` for both; the
#: bindings' package version (its metadata) then says which engine it carries. 0.4.7's
#: ``vendor/stable-diffusion.cpp`` equals upstream ``master-596-90e87bc`` file for file
#: (every file outside the ggml and frontend submodules and assets/).
VENDORED_ENGINE: dict[str, tuple[str, str]] = {
    "0.4.7": ("master-596-90e87bc", "90e87bc"),
}


def engine_identity(reported_version: str, reported_commit: str, bindings: str) -> dict[str, str]:
    """The engine's version and commit: the library's own, else the ones the installed
    bindings vendor (``engine_source`` says which)."""
    if reported_version not in ("", "unknown") and reported_commit not in ("", "unknown"):
        return {"engine_version": reported_version, "engine_commit": reported_commit,
                "engine_source": "library"}  # fmt: skip
    known = VENDORED_ENGINE.get(bindings)
    if known is None:
        return {"engine_version": reported_version or "unknown",
                "engine_commit": reported_commit or "unknown", "engine_source": "library"}  # fmt: skip
    return {"engine_version": known[0], "engine_commit": known[1],
            "engine_source": f"stable-diffusion-cpp-python {bindings} package"}  # fmt: skip
