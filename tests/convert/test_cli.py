"""``sdcpp convert`` as a user runs it: exit codes, one-line errors, Ctrl-C safety, --plan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdcpp_service.convert import plan_conversion
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine

CLI = [sys.executable, "-c", "from sdcpp_service._launch import main; main()", "convert"]


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "SDCPP_DATA_DIR": str(tmp_path / "data")}


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env(tmp_path), timeout=600
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_leaves_no_output(sig: signal.Signals, kit: Kit, tmp_path: Path) -> None:
    dst = tmp_path / "out.gguf"
    proc = subprocess.Popen(
        [*CLI, str(kit.path("sdxs")), "-o", str(dst), "--type", "q8_0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(tmp_path),
    )
    tmp = tmp_path / "out.gguf.incomplete"
    deadline = time.monotonic() + 60
    while not tmp.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tmp.exists(), "the conversion never started"
    time.sleep(0.5)  # the engine is now converting
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    last = err.strip().splitlines()[-1]
    assert last == (
        "error: interrupted" if sig == signal.SIGINT else "error: conversion terminated (SIGTERM)"
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out.gguf")] == []


def test_existing_output_needs_force(kit: Kit, tmp_path: Path) -> None:
    dst = tmp_path / "taesd-f16.gguf"
    dst.write_bytes(b"old")
    r = run(tmp_path, str(kit.path("taesd")), "-o", str(tmp_path), "--type", "f16")
    assert r.returncode == 3
    assert r.stderr.strip() == f"error: {dst}: already exists; pass --force to overwrite"
    assert dst.read_bytes() == b"old"
    assert not (tmp_path / "taesd-f16.gguf.incomplete").exists()

    r = run(tmp_path, str(kit.path("taesd")), "-o", str(tmp_path), "--type", "f16", "--force")
    assert r.returncode == 0, r.stderr
    assert dst.stat().st_size > 1000 and "taesd.safetensors" in r.stdout
    assert (tmp_path / "taesd-f16.gguf.json").is_file()


def test_truncated_input_is_refused_before_work(kit: Kit, tmp_path: Path) -> None:
    data = kit.path("taesd").read_bytes()
    src = tmp_path / "cut.safetensors"
    src.write_bytes(data[: len(data) // 2])
    t0 = time.monotonic()
    r = run(tmp_path, str(src), "--type", "q8_0")
    assert r.returncode == 4
    assert r.stderr.startswith(f"error: {src}: truncated") and len(r.stderr.splitlines()) == 1
    assert time.monotonic() - t0 < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.safetensors"]


def test_plan_json_writes_nothing(kit: Kit, tmp_path: Path) -> None:
    src = kit.path("sdxs")
    r = run(tmp_path, str(src), "--type", "q4_k", "--rule", "attn2=q8_0", "--plan", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = plan_conversion(src, "q4_k", ["attn2=q8_0"])
    assert got["output_bytes"] == want.output_bytes
    assert {t["name"]: t["target"] for t in got["tensors"]} == want.types()
    assert got["rules"][0]["pattern"] == "attn2" and got["rules"][0]["origin"] == "user"
    assert got["output"] == str(src.parent / "sdxs-q4_k.gguf")
    assert not (src.parent / "sdxs-q4_k.gguf").exists()

    text = run(tmp_path, str(src), "--type", "q4_k", "--plan")
    assert text.returncode == 0
    assert "projected output:" in text.stdout.splitlines()[-1]


def test_types_and_bad_type(kit: Kit, tmp_path: Path) -> None:
    r = run(tmp_path, "--list-types")
    types = r.stdout.split()
    assert {"f16", "q8_0", "q4_0", "q4_k"} <= set(types) and "q8_1" not in types
    r = run(tmp_path, str(kit.path("taesd")), "--type", "q9")
    assert r.returncode == 2 and r.stderr.startswith("error: type: unknown type 'q9'")
    r = run(tmp_path, str(kit.path("taesd")), "--rule", "x")
    assert r.returncode == 2 and "REGEX=TYPE" in r.stderr


def test_failed_verify_leaves_no_output(kit: Kit, tmp_path: Path) -> None:
    not_a_model = kit.files("flux2_klein")["llm"]
    r = run(tmp_path, str(kit.path("taesd")), "-o", str(tmp_path), "--type", "f16", "--verify",
            "--verify-with", str(not_a_model))  # fmt: skip
    assert r.returncode == 5 and "verify failed" in r.stderr and len(r.stderr.splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("taesd")] == []


def test_launch_starts_the_engine_child_only_for_work() -> None:
    from sdcpp_service._launch import wants_child

    assert wants_child(["sdcpp", "convert", "a.safetensors", "--type", "q4_0"])
    assert wants_child(["sdcpp", "convert", "--all", "models/"])
    assert not wants_child(["sdcpp", "convert"])
    assert not wants_child(["sdcpp", "convert", "a.safetensors", "--plan"])
    assert not wants_child(["sdcpp", "convert", "--list-types"])
    assert not wants_child(["sdcpp", "convert", "--help"])
    assert not wants_child(["sdcpp", "generate", "convert"])


def test_an_unclaimed_child_ends_with_its_parent(tmp_path: Path) -> None:
    # A usage error after launch: the prestarted child must not outlive the command.
    res = run(tmp_path, "a.safetensors", "--type")
    assert res.returncode == 2
    script = (
        "from sdcpp_service import _launch; "
        "_launch._prestarted = _launch.spawn_child(); print(_launch._prestarted.pid)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(out.stdout)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").is_file():
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":  # exited; only waiting to be reaped by init
                return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the unclaimed engine child outlived its parent")


def test_the_child_announces_the_engines_type_table() -> None:
    # The child reads the table from the engine library alone; it must equal the table the
    # parent-side code builds (plans use both).
    import json

    from sdcpp_service._launch import spawn_child
    from sdcpp_service.convert._engine import engine_types

    proc = spawn_child()
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
    finally:
        proc.communicate(timeout=60)  # EOF on stdin: the child leaves without work
    assert proc.returncode == 0
    assert ready["event"] == "ready"
    assert ready["types"] == engine_types().to_json()
    assert {"q8_0", "q4_k", "f16"} <= {t["name"] for t in ready["types"] if t["writable"]}
    assert ready["engine"]["bindings"] == "0.4.7"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread policy is Linux's")
def test_the_source_hash_runs_at_idle_priority() -> None:
    # Beside a conversion the hash may only take CPU the engine leaves free.
    import threading

    from sdcpp_service.convert.meta import _idle_priority

    seen: list[int] = []

    def probe() -> None:
        _idle_priority()
        seen.append(os.sched_getscheduler(threading.get_native_id()))

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert seen == [os.SCHED_IDLE]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's thread is untouched


def test_the_convert_bar_starts_at_the_first_update() -> None:
    # rich loads after the job is sent; the other commands' bars start on entering.
    from sdcpp_service.cli import _progress
    from sdcpp_service.cli.convert import Bar
    from sdcpp_service.convert import ConvertProgress

    with Bar(enabled=True) as bar:
        assert bar.progress is None
        bar(ConvertProgress("converting", 3, 10, 300, 1000, 0.5))
        task = bar.progress.tasks[0]
        assert (task.completed, task.total, task.description) == (300, 1000, "converting")
    with _progress.Bar(enabled=True) as plain:
        assert plain.progress is not None
    with Bar(enabled=False) as off:
        off(ConvertProgress("converting", 3, 10, 300, 1000, 0.5))
        assert off.progress is None


def test_warns_on_a_rule_that_matches_nothing_and_an_output_no_smaller(
    kit: Kit, tmp_path: Path
) -> None:
    """Issue 12 item 9: a conversion that does not do what was asked says so (and still runs)."""
    r = run(tmp_path, str(kit.path("taesd")), "-o", str(tmp_path), "--type", "q8_0",
            "--rule", "no_such_tensor=q4_0", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, r.stderr
    assert warnings[0].startswith("warning: rule 1 'no_such_tensor=q4_0' matches no tensor")
    assert "is no smaller than the input" in warnings[1]
    done = json.loads(r.stdout)
    assert done["warnings"] == [w.removeprefix("warning: ") for w in warnings]
    assert done["output_bytes"] >= 0.98 * kit.path("taesd").stat().st_size  # what was warned
    matched = run(tmp_path, str(kit.path("taesd")), "-o", str(tmp_path / "f16.gguf"), "--type",
                  "f16", "--rule", "decoder=f16")  # fmt: skip
    assert matched.returncode == 0 and "matches no tensor" not in matched.stderr, matched.stderr
    smaller = run(tmp_path, str(kit.path("sdxs")), "--type", "q8_0", "--plan")  # 0.5× of f16
    assert smaller.returncode == 0 and "warning" not in smaller.stderr, smaller.stderr
