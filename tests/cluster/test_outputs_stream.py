"""A worker's outputs into PostgreSQL: a file larger than a chunk is streamed a chunk per row
(COPY) in the transaction that stores the outcome, and read back byte for byte; a discarded
attempt stores nothing; a schema-1 database's outputs survive ``migrate``."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import psycopg
import pytest

from sdcpp_service.cluster import claims
from sdcpp_service.cluster.schema import migrate
from sdcpp_service.cluster.store import PgStore


def running_job(url: str, job_id: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sdcpp_jobs (id, kind, model, model_name, queue, params, load, created, "
            "state, attempts, owner) VALUES (%s, 'txt2img', 'm', 'm', 'm:m', '{}', '{}', 0, "
            "'running', 1, 'w1')",
            (job_id,),
        )


def finish(url: str, job_id: str, attempts: int, files: list[tuple[str, Path]],
           chunk: int) -> bool:  # fmt: skip
    async def go() -> bool:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        async with conn:
            return await claims.finish(conn, job_id, attempts, "w1", "completed",
                                       {"outputs": [n for n, _ in files]}, None, files, chunk)  # fmt: skip

    return asyncio.run(go())


def test_a_big_output_streams_in_chunks_and_reads_back_exactly(pg_url: str, tmp_path: Path,
                                                                monkeypatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    migrate(pg_url)
    running_job(pg_url, "a" * 32)
    chunk = 64 * 1024
    video, still = tmp_path / f"{'a' * 32}-0.mp4", tmp_path / f"{'a' * 32}-1.png"
    video.write_bytes(os.urandom(5 * chunk + 1234))
    still.write_bytes(os.urandom(300))
    reads: list[int] = []

    class Counted(io.FileIO):
        def read(self, n: int = -1) -> bytes:  # type: ignore[override]
            reads.append(n)
            return super().read(n)

    monkeypatch.setattr(claims, "open", lambda path, mode: Counted(path, mode), raising=False)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} read whole"))
    files = [(video.name, video), (still.name, still)]
    assert finish(pg_url, "a" * 32, 1, files, chunk)
    monkeypatch.undo()
    assert reads and all(0 < n <= chunk for n in reads)  # never the whole file at once
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT name, seq, length(data) FROM sdcpp_output_chunks "
                            "ORDER BY name, seq").fetchall()  # fmt: skip
        state = conn.execute("SELECT state FROM sdcpp_jobs").fetchone()
    assert state == ("completed",)
    assert rows == [(video.name, i, chunk) for i in range(5)] + [(video.name, 5, 1234),
                                                                (still.name, 0, 300)]  # fmt: skip
    store = PgStore(pg_url)
    try:
        for name, path in files:
            out = io.BytesIO()
            assert store.copy_output(name, out) == path.stat().st_size
            assert out.getvalue() == path.read_bytes()
        assert store.job_bytes("a" * 32) == 5 * chunk + 1234 + 300
    finally:
        store.close()


def test_a_discarded_attempt_stores_no_output(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    running_job(pg_url, "b" * 32)
    big = tmp_path / f"{'b' * 32}-0.mp4"
    big.write_bytes(os.urandom(3000))
    assert not finish(pg_url, "b" * 32, 2, [(big.name, big)], 1000)  # attempt 1 holds it
    assert not finish(pg_url, "b" * 32, 2, [(big.name, big)], 10_000)  # inline, the same
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM sdcpp_output_chunks").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM sdcpp_outputs").fetchone() == (0,)
        assert conn.execute("SELECT state FROM sdcpp_jobs").fetchone() == ("running",)


def test_migrate_moves_schema_one_outputs_into_chunks(pg_url: str) -> None:
    migrate(pg_url)
    running_job(pg_url, "c" * 32)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the schema-1 shape, one output
        conn.execute("DROP TABLE sdcpp_output_chunks")
        conn.execute("ALTER TABLE sdcpp_outputs ADD COLUMN data bytea")
        conn.execute("INSERT INTO sdcpp_outputs VALUES (%s, %s, 5, %s)",
                     ("c" * 32 + "-0.png", "c" * 32, b"hello"))  # fmt: skip
    migrate(pg_url)
    migrate(pg_url)  # idempotent
    store = PgStore(pg_url)
    try:
        out = io.BytesIO()
        assert store.copy_output("c" * 32 + "-0.png", out) == 5 and out.getvalue() == b"hello"
    finally:
        store.close()
