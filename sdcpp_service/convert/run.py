"""``convert(src, dst, qtype, rules, vae)``: plan, convert in an engine child, verify, rename.

Safety: the engine writes ``DST.incomplete``; only a conversion that finished (and, with
``verify``, loaded and generated) is renamed to ``DST``. Ctrl-C, SIGTERM or any failure kills
the engine child and removes the temporary file, so ``DST`` never exists half-written. An
existing ``DST`` is refused unless ``force``; free disk space is checked against the plan's
exact output size before the engine starts; the source is only ever opened for reading.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sdcpp_service.config import Settings
from sdcpp_service.convert._child import own_maxrss
from sdcpp_service.convert._worker import Worker
from sdcpp_service.convert.plan import Plan, TypeTable, make_plan, parse_rule
from sdcpp_service.convert.rules import default_rules
from sdcpp_service.errors import Cancelled, ConvertError, InvalidRequest, OutputExists

if TYPE_CHECKING:
    from sdcpp_service.convert.meta import Hasher
    from sdcpp_service.convert.source import Source

# Detection (sdcpp_service.models) and the sidecar code are imported where used: `convert`
# starts the engine process first, so it loads the engine while this one reads headers.

#: An output at least this fraction of its input is "no smaller" (a header's worth of bytes
#: either way is not a conversion anyone wants): the plan warns.
NOT_SMALLER = 0.98
#: Free space kept beyond the projected output size.
DISK_SLACK = 16 * 1024 * 1024
#: Load-option slots the verify step can put a component in (the model's own kind → slot).
VERIFY_SLOTS = (
    "model", "diffusion_model", "vae", "taesd", "clip_l", "clip_g", "t5xxl", "llm",
    "clip_vision", "control_net", "photo_maker",
)  # fmt: skip


@dataclass(frozen=True)
class ConvertProgress:
    """``phase``: ``converting`` (tensors read and converted), ``writing``, then ``verifying``
    (with ``verify``) or ``finishing``."""

    phase: str
    tensors: int
    tensors_total: int
    bytes: int
    bytes_total: int
    elapsed: float


ConvertProgressCallback = Callable[[ConvertProgress], None]


@dataclass(frozen=True)
class ConvertResult:
    source: str
    output: str
    sidecar: str
    type: str
    source_bytes: int
    output_bytes: int
    seconds: float
    engine_seconds: float
    peak_rss: int
    plan: Plan
    metadata: Mapping[str, Any]
    verified: Mapping[str, Any] | None = None

    @property
    def ratio(self) -> float:
        return self.output_bytes / self.source_bytes if self.source_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "output": self.output,
            "sidecar": self.sidecar,
            "type": self.type,
            "source_bytes": self.source_bytes,
            "output_bytes": self.output_bytes,
            "ratio": round(self.ratio, 4),
            "seconds": round(self.seconds, 3),
            "engine_seconds": round(self.engine_seconds, 3),
            "peak_rss": self.peak_rss,
            "verified": dict(self.verified) if self.verified is not None else None,
            "warnings": list(self.plan.warnings),
            "metadata": dict(self.metadata),
        }


def list_types() -> list[str]:
    """Weight types the pinned engine can write (loads the engine in this process)."""
    from sdcpp_service.convert._engine import engine_types

    return engine_types().writable()


def build_plan(
    source: Source, qtype: str, rules: Sequence[str], table: TypeTable, *, defaults: bool = True
) -> Plan:
    """User rules (first) + the default table's rows for this file → the plan."""
    target = table.require(qtype)
    user = [parse_rule(r, table) for r in rules]
    auto = default_rules(source.slot, source.arch, target.name, source.tensors, table)
    notes: list[str] = []
    if not target.quantized:
        notes.append(f"{target.name} is not quantized: default rules do not apply")
    elif source.slot in ("vae", "taesd") and not user:
        notes.append(f"a VAE stays f16 by default; --rule '.={target.name}' quantizes it")
    src_types = {t.dtype.lower() for t in source.tensors}
    lossy = sorted(t for t in src_types if (q := table.get(t)) is not None and q.quantized)
    if lossy:
        notes.append(
            f"the source is already quantized ({', '.join(lossy)}): precision lost there is not restored"
        )
    info = source.info
    plan = make_plan(
        source.tensors,
        target.name,
        table,
        [*user, *(auto if defaults else [])],
        notes,
        {"source": str(source.path), "kind": info.kind, "arch": info.arch, "slot": source.slot},
    )
    if source.size and plan.output_bytes >= NOT_SMALLER * source.size:
        from dataclasses import replace

        from sdcpp_service.convert.meta import fmt_bytes

        held = ", ".join(sorted(src_types)) or "?"
        hint = (f"{target.name} does not shrink this file; a smaller --type (q8_0, q4_k, …) does"
                if not target.quantized else
                f"the rules keep its tensors as they are; --rule '.={target.name}' forces "
                f"{target.name}")  # fmt: skip
        ratio = plan.output_bytes / source.size
        plan = replace(plan, warnings=(*plan.warnings, (
            f"the output ({fmt_bytes(plan.output_bytes)}, {ratio:.2f}×) is no smaller than the "
            f"input ({fmt_bytes(source.size)}, {held}): {hint}")))  # fmt: skip
    return plan


def plan_conversion(
    src: str | Path,
    qtype: str = "q8_0",
    rules: Sequence[str] = (),
    vae: str | Path | None = None,
) -> Plan:
    """What ``convert`` would write, without writing (loads the engine for its type table)."""
    from sdcpp_service.convert._engine import engine_types
    from sdcpp_service.convert.source import open_source

    return build_plan(open_source(src, vae), qtype, rules, engine_types())


def output_path(
    source: Source, dst: str | Path | None, qtype: str, types: list[str], catalog: Path | None
) -> Path:
    """``dst`` (a file, or a folder for ``<stem>-<type>.gguf``), else beside the source or in
    the catalog folder of its kind (``<catalog>/checkpoints``, ``…/vae``…)."""
    from sdcpp_service.convert.source import default_name

    name = default_name(source.path, qtype, types)
    if dst is not None:
        d = Path(dst).expanduser()
        return d / name if d.is_dir() or str(dst).endswith(("/", os.sep)) else d
    if catalog is not None:
        return catalog / source.folder / name
    return source.path.parent / name


@contextmanager
def _sigterm_cancels() -> Iterator[None]:
    """SIGTERM raises :class:`Cancelled` in the main thread (Ctrl-C already raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Cancelled("conversion terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_disk(folder: Path, need: int, tmp: Path) -> None:
    from sdcpp_service.convert import meta

    free = shutil.disk_usage(folder).free
    if tmp.exists():
        free += tmp.stat().st_size
    if free < need + DISK_SLACK:
        raise ConvertError(
            folder,
            f"not enough free disk space: the output needs {meta.fmt_bytes(need)}, "
            f"{meta.fmt_bytes(free)} free",
        )


def _verify_spec(source: Source, verify_with: Mapping[str, str]) -> dict[str, Any]:
    slot = source.info.slot or ""
    slot = slot.removesuffix("_path")
    if slot not in VERIFY_SLOTS:
        raise InvalidRequest("verify", f"a {source.info.kind} cannot be loaded for --verify")
    others = {k: str(Path(v).expanduser()) for k, v in verify_with.items()}
    bad = sorted(set(others) - set(VERIFY_SLOTS))
    if bad:
        raise InvalidRequest("verify_with", f"unknown slot '{bad[0]}'")
    if slot in others:
        raise InvalidRequest("verify_with", f"the output itself fills the {slot} slot")
    main = slot in ("model", "diffusion_model") or "model" in others or "diffusion_model" in others
    if not main:
        raise InvalidRequest(
            "verify", f"a {source.info.kind} needs a main model to load with: --verify-with MODEL"
        )
    return {"slot": slot, "with": others, "generate": True}


def convert(
    src: str | Path,
    dst: str | Path | None = None,
    qtype: str = "q8_0",
    rules: Sequence[str] = (),
    vae: str | Path | None = None,
    *,
    force: bool = False,
    verify: bool = False,
    verify_with: Mapping[str, str] | None = None,
    catalog: bool = False,
    defaults: bool = True,
    progress: ConvertProgressCallback | None = None,
    settings: Settings | None = None,
) -> ConvertResult:
    """Convert ``src`` to a GGUF of ``qtype`` (see the module docstring for the guarantees)."""
    t0 = time.perf_counter()
    settings = settings or Settings.from_env()
    catalog_dir = settings.model_dirs[0] if catalog and settings.model_dirs else None
    with _sigterm_cancels():
        worker = Worker(str(src))
        try:
            from sdcpp_service.convert.meta import Hasher
            from sdcpp_service.convert.source import open_source

            source = open_source(src, vae)
            hasher = Hasher(source, settings)
            hasher.start()  # the file is valid: hash it while the engine starts and converts
            return _run(
                worker, source, hasher, dst, qtype, rules, force, verify, verify_with or {},
                catalog_dir, defaults, progress, t0,
            )  # fmt: skip
        finally:
            worker.close()


def _run(
    worker: Worker,
    source: Source,
    hasher: Hasher,
    dst: str | Path | None,
    qtype: str,
    rules: Sequence[str],
    force: bool,
    verify: bool,
    verify_with: Mapping[str, str],
    catalog: Path | None,
    defaults: bool,
    progress: ConvertProgressCallback | None,
    t0: float,
) -> ConvertResult:
    from sdcpp_service.convert import meta

    spec = _verify_spec(source, verify_with) if verify else None
    ready = worker.expect("ready")
    table = TypeTable.from_json(ready["types"])
    the_plan = build_plan(source, qtype, rules, table, defaults=defaults)
    out = output_path(source, dst, the_plan.qtype, table.writable(), catalog).absolute()
    if out.resolve() in (source.path.resolve(), source.vae and source.vae.resolve()):
        raise InvalidRequest("output", f"{out} is the source; choose another name")
    if out.exists() and not force:
        raise OutputExists(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _incomplete(out)
    side = meta.sidecar_path(out)
    _check_disk(out.parent, the_plan.output_bytes, tmp)
    done = False
    try:
        _probe_writable(tmp)
        worker.send(
            {
                "source": str(source.path),
                "vae": str(source.vae or ""),
                "output": str(tmp),
                "type_id": table.require(the_plan.qtype).id,
                "rules": the_plan.engine_rules(table),
                "verify": spec,
            }
        )
        outcome = _follow(worker, the_plan, tmp, progress, t0, spec is not None)
        written = tmp.stat().st_size
        if written != the_plan.output_bytes:
            meta.log.warning(
                "%s: the engine wrote %d bytes, the plan said %d",
                out,
                written,
                the_plan.output_bytes,
            )
        record = meta.record(source, the_plan, out, written, ready["engine"], hasher.result())
        meta.write_json(_incomplete(side), record)
        os.replace(tmp, out)
        done = True
        os.replace(_incomplete(side), side)
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
            _incomplete(side).unlink(missing_ok=True)
    return ConvertResult(
        source=str(source.path),
        output=str(out),
        sidecar=str(side),
        type=the_plan.qtype,
        source_bytes=source.size,
        output_bytes=written,
        seconds=time.perf_counter() - t0,
        engine_seconds=outcome.engine_seconds,
        peak_rss=max(outcome.maxrss, own_maxrss()),
        plan=the_plan,
        metadata=record,
        verified=outcome.verified,
    )


def _probe_writable(tmp: Path) -> None:
    """Prove ``tmp`` can be created, and leave it absent: the engine must create the file
    itself. ext4 writes a file back on close when an open truncated it (``auto_da_alloc``), so
    the engine opening ("wb") a file we made would add that write-back to the conversion
    (+0.6 s for a 2 GB checkpoint here). A stale temp of a killed run is removed too."""
    try:
        tmp.unlink(missing_ok=True)
        with open(tmp, "xb"):
            pass
        tmp.unlink()
    except OSError as exc:
        raise ConvertError(
            tmp.parent, f"cannot write the output here ({exc.strerror}); choose another --output"
        ) from exc


def _incomplete(path: Path) -> Path:
    return path.with_name(path.name + ".incomplete")


@dataclass
class _Outcome:
    engine_seconds: float = 0.0
    verified: dict[str, Any] | None = None
    maxrss: int = 0


def _follow(
    worker: Worker,
    the_plan: Plan,
    tmp: Path,
    progress: ConvertProgressCallback | None,
    t0: float,
    verify: bool,
) -> _Outcome:
    """Relay the child's events until ``done``; raise on engine or verify failure."""
    total_t = len(the_plan.tensors)
    total_b = the_plan.output_bytes
    phase, step = "converting", 0
    outcome = _Outcome()
    label = the_plan.meta.get("source", str(tmp))
    while True:
        event = worker.next(timeout=0.25)
        kind = event.get("event")
        if kind == "progress":
            step, total_t = int(event["step"]), int(event["total"]) or total_t
            if step >= total_t:
                phase = "writing"
        elif kind == "log":
            _log_engine(event)
        elif kind == "converted":
            if not event["ok"]:
                detail = "; ".join(event.get("errors") or []) or "the engine reported failure"
                raise ConvertError(label, f"conversion failed: {detail}")
            outcome.engine_seconds = float(event["seconds"])
            phase, step = ("verifying" if verify else "finishing"), total_t
        elif kind == "verify_failed":
            raise ConvertError(label, f"verify failed: {event['message']}")
        elif kind == "verified":
            outcome.verified = {k: v for k, v in event.items() if k != "event"}
        elif kind == "done":
            if verify and outcome.verified is None:
                raise ConvertError(label, "verify did not report")
            outcome.maxrss = int(event.get("maxrss", 0))
            return outcome
        if progress is not None:
            if phase == "converting":
                done_b = total_b * step // max(total_t, 1)
            else:
                done_b = tmp.stat().st_size if tmp.exists() else 0
            elapsed = time.perf_counter() - t0
            progress(ConvertProgress(phase, step, total_t, done_b, total_b, elapsed))


def _log_engine(event: dict[str, Any]) -> None:
    from sdcpp_service.convert.meta import log_engine

    log_engine(event)
