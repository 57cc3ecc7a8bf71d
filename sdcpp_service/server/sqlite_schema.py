"""The SQLite job store's tables (``jobs``, ``inputs``), the columns added since the first
schema, and a ``jobs`` row as a :class:`~sdcpp_service.server.jobs.Job`."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sdcpp_service.server.jobs import Job

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    model TEXT NOT NULL,
    load TEXT NOT NULL,
    params TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    owner TEXT,
    slot INTEGER,
    heartbeat REAL,
    progress TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS inputs (
    job_id TEXT NOT NULL,
    field TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, field, idx)
);
"""

#: Columns added since the first schema (added to an older database when it is opened).
ADDED = (
    ("owner", "TEXT"),
    ("slot", "INTEGER"),
    ("heartbeat", "REAL"),
    ("progress", "TEXT"),
    ("cancel_requested", "INTEGER NOT NULL DEFAULT 0"),
)


def job_from_row(row: sqlite3.Row) -> Job:
    def js(value: str | None) -> Any:
        return None if value is None else json.loads(value)

    return Job(
        id=row["id"],
        kind=row["kind"],
        model=row["model"],
        params=js(row["params"]),
        load=js(row["load"]),
        state=row["state"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        attempts=row["attempts"],
        result=js(row["result"]),
        error=js(row["error"]),
        seq=row["seq"],
        owner=row["owner"] or "",
        slot=row["slot"],
        heartbeat=row["heartbeat"],
        cancel_requested=bool(row["cancel_requested"]),
    )
