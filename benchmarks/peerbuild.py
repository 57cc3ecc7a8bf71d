"""Build ``sd-cli`` and ``sd-server`` from the pinned bindings' vendored stable-diffusion.cpp.

    python benchmarks/peerbuild.py [--source DIR] [--cache DIR] [--jobs N]

The source is the bindings' sdist (``pip download --no-binary``), unpacked into the cache dir once,
or ``--source`` (a directory holding ``vendor/stable-diffusion.cpp``). The peers' own sources
(``examples/cli``, ``examples/server``, ``examples/common``, the file lists read from their
``CMakeLists.txt``) are compiled with cmake, Release, and linked against the engine library of the
installed bindings: the peers then run the very same compiled engine, with the same backend flags,
as we do — only the front ends differ, which is what the comparison is about. (Building the whole
engine again, 200 objects, takes an hour on two busy cores; the front ends take minutes.)
WebP/WebM output is left out: the benchmark writes PNG. A second call finds the binaries and
builds nothing. ``peers.py`` calls :func:`ensure_peers`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

from sdcpp_service._version import PINNED_BINDINGS

PACKAGE = "stable-diffusion-cpp-python"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sdcpp-service"

CMAKELISTS = """\
cmake_minimum_required(VERSION 3.16)
project(sdcpp_peers C CXX)
set(CMAKE_BUILD_TYPE Release)
set(CMAKE_CXX_STANDARD 17)
set(SD "{sd}")
add_library(stable-diffusion SHARED IMPORTED)
set_target_properties(stable-diffusion PROPERTIES
    IMPORTED_LOCATION "{lib}" INTERFACE_INCLUDE_DIRECTORIES "${{SD}}/include")
add_library(zip OBJECT ${{SD}}/thirdparty/zip.c)
target_include_directories(zip PUBLIC ${{SD}}/thirdparty)
find_package(Threads REQUIRED)
include_directories(${{SD}}/examples ${{SD}}/thirdparty)
add_executable(sd-cli {cli})
target_link_libraries(sd-cli PRIVATE stable-diffusion zip Threads::Threads)
add_executable(sd-server {server})
target_link_libraries(sd-server PRIVATE stable-diffusion Threads::Threads)
set_target_properties(sd-cli sd-server PROPERTIES
    BUILD_RPATH "{libdir}" RUNTIME_OUTPUT_DIRECTORY "${{CMAKE_BINARY_DIR}}/bin")
"""


def engine_library() -> tuple[Path, str]:
    """The installed engine library and the preset it was built with."""
    from sdcpp_service.engine import sdcpp

    info = sdcpp.system_info()
    return Path(info["library"]), str(info["backend"])


def fetch_source(cache: Path) -> Path:
    """The unpacked sdist of the pinned bindings (downloaded with pip once)."""
    root = cache / "src" / f"stable_diffusion_cpp_python-{PINNED_BINDINGS}"
    if (root / "vendor" / "stable-diffusion.cpp" / "CMakeLists.txt").is_file():
        return root
    dl = cache / "src" / "download"
    dl.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        + ["--dest", str(dl), f"{PACKAGE}=={PINNED_BINDINGS}"],
        check=True,
    )
    (sdist,) = dl.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(cache / "src", filter="data")
    return root


def sources(example: Path) -> str:
    """The ``add_executable`` file list of an upstream example, as absolute paths."""
    text = (example / "CMakeLists.txt").read_text()
    match = re.search(r"add_executable\(\$\{TARGET\}(.*?)\)", text, re.S)
    if not match:
        raise SystemExit(f"{example}/CMakeLists.txt: no add_executable list")
    return " ".join(str((example / f).resolve()) for f in match.group(1).split())


def ensure_peers(
    source: Path | None = None,
    cache: Path = DEFAULT_CACHE,
    jobs: int = 2,
    log: Callable[[str], None] = print,
    need_server: bool = True,
) -> tuple[Path, Path]:
    """Paths of ``sd-cli`` and ``sd-server``, built first when missing (``need_server=False``:
    an existing ``sd-cli`` is enough)."""
    lib, preset = engine_library()
    build = cache / "peers" / f"{PINNED_BINDINGS}-{preset}"
    cli, server = build / "bin" / "sd-cli", build / "bin" / "sd-server"
    if cli.is_file() and (server.is_file() or not need_server):
        return cli, server
    sd = (source or fetch_source(cache)) / "vendor" / "stable-diffusion.cpp"
    project = build / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "CMakeLists.txt").write_text(
        CMAKELISTS.format(
            sd=sd,
            lib=lib,
            libdir=lib.parent,
            cli=sources(sd / "examples" / "cli"),
            server=sources(sd / "examples" / "server"),
        )
    )
    log(f"building sd-cli and sd-server against {lib} ({preset}) in {build}")
    subprocess.run(["cmake", "-S", str(project), "-B", str(build), "-G", "Ninja"], check=True)
    nice = ["nice", "-n", "10"] if sys.platform != "win32" else []
    subprocess.run(nice + ["cmake", "--build", str(build), "-j", str(jobs)], check=True)
    return cli, server


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--source", type=Path, help="unpacked bindings sdist (default: pip download)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    for path in ensure_peers(args.source, args.cache, args.jobs):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
