"""The cluster's tables (procrastinate's and ours), ``sdcpp queue migrate`` and ``status``."""

from __future__ import annotations

from typing import Any

from sdcpp_service.cluster.store import CHANNEL, check_schema, connect

VERSION = "2"
__all__ = ["CHANNEL", "migrate", "status"]

OURS = """
CREATE TABLE IF NOT EXISTS sdcpp_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS sdcpp_jobs (
    id text PRIMARY KEY,
    seq bigserial,
    kind text NOT NULL,
    model text NOT NULL,
    model_name text NOT NULL,
    queue text NOT NULL,
    params jsonb NOT NULL,
    load jsonb NOT NULL,
    inputs jsonb,
    state text NOT NULL DEFAULT 'queued',
    created double precision NOT NULL,
    started double precision,
    finished double precision,
    attempts integer NOT NULL DEFAULT 0,
    result jsonb,
    error jsonb,
    owner text NOT NULL DEFAULT '',
    slot integer,
    pjob bigint,
    pworker bigint,
    cancel_requested boolean NOT NULL DEFAULT false,
    client text NOT NULL DEFAULT '',
    progress jsonb,
    preview bytea,
    preview_step integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sdcpp_jobs_state_seq ON sdcpp_jobs (state, seq);
CREATE INDEX IF NOT EXISTS sdcpp_jobs_pjob ON sdcpp_jobs (pjob);
CREATE TABLE IF NOT EXISTS sdcpp_outputs (
    name text PRIMARY KEY,
    job_id text NOT NULL REFERENCES sdcpp_jobs (id) ON DELETE CASCADE,
    size bigint NOT NULL
);
-- an output's bytes, a row per chunk (a worker uploads them one at a time: a video is never
-- whole in its memory); stored uncompressed (images and videos do not compress) so a part of a
-- chunk is read without the rest
CREATE TABLE IF NOT EXISTS sdcpp_output_chunks (
    name text NOT NULL REFERENCES sdcpp_outputs (name) ON DELETE CASCADE,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (name, seq)
);
ALTER TABLE sdcpp_output_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
-- schema 1 kept an output's bytes in sdcpp_outputs.data: they become its one chunk
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
               AND table_name = 'sdcpp_outputs' AND column_name = 'data') THEN
        INSERT INTO sdcpp_output_chunks (name, seq, data) SELECT name, 0, data FROM sdcpp_outputs
            ON CONFLICT DO NOTHING;
        ALTER TABLE sdcpp_outputs DROP COLUMN data;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS sdcpp_outputs_job ON sdcpp_outputs (job_id);
CREATE TABLE IF NOT EXISTS sdcpp_workers (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    models jsonb NOT NULL,
    any_model boolean NOT NULL,
    slots jsonb NOT NULL,
    info jsonb NOT NULL,
    started timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now(),
    pworker bigint
);
"""


def migrate(url: str) -> dict[str, Any]:
    """Apply procrastinate's schema (once) and ours (idempotent); returns what was done."""
    from procrastinate import PsycopgConnector
    from procrastinate.schema import SchemaManager

    done: dict[str, Any] = {"procrastinate": "present", "sdcpp": VERSION}
    with connect(url) as conn:
        present = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if present is None or present[0] is None:
            connector = PsycopgConnector(conninfo=url)
            sync = connector.get_sync_connector()
            sync.open()
            try:
                SchemaManager(sync).apply_schema()
            finally:
                sync.close()
            done["procrastinate"] = "applied"
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(727)")  # two migrates at once
            conn.execute(OURS)
            conn.execute(
                "INSERT INTO sdcpp_meta VALUES ('schema', %s) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value",
                (VERSION,),
            )
    return done


def status(url: str, lost_after: float) -> dict[str, Any]:
    """Queued and running jobs per model, and every worker (``live`` by its heartbeat)."""
    with connect(url) as conn:
        check_schema(conn)
        rows = conn.execute(
            "SELECT model_name, state, count(*) FROM sdcpp_jobs "
            "WHERE state IN ('queued', 'running') GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        models: dict[str, dict[str, int]] = {}
        for name, state, count in rows:
            models.setdefault(name, {"queued": 0, "running": 0})[state] = int(count)
        from sdcpp_service.cluster.store import workers

        return {"models": models, "workers": workers(conn, lost_after)}
