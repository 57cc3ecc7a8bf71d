"""The SQLite job store's owner calls: claim by a worker slot, heartbeat, progress, cancel
requests, recovery of what this node owned, and an older database gaining the new columns."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sdcpp_service.server.jobs import Job, new_id
from sdcpp_service.server.sqlite import SQLiteJobStore
from sdcpp_service.server.store import JobStore


def job() -> Job:
    return Job(new_id(), "txt2img", "m", {"prompt": "p"})


def test_claim_once_heartbeat_progress_and_cancel_request(tmp_path: Path) -> None:
    store: JobStore = SQLiteJobStore(tmp_path / "jobs.db")
    j = store.submit(job(), {"init_image": b"x"})
    assert store.claim(j, "node-a", 1) and not store.claim(j, "node-b", 0)  # one owner
    got = store.get(j.id)
    assert got is not None and (got.owner, got.slot, got.attempts) == ("node-a", 1, 1)
    beat = got.heartbeat
    store.heartbeat("node-a")
    store.progress(j.id, {"step": 3, "total": 4})
    again = store.get(j.id)
    assert again is not None and again.heartbeat is not None and beat is not None
    assert again.heartbeat >= beat
    assert store.request_cancel(j.id)
    asked = store.get(j.id)
    assert asked is not None and asked.cancel_requested
    store.finish(j, "cancelled")
    assert not store.request_cancel(j.id)  # finished: nothing to ask
    assert store.inputs(j.id) == {}
    store.close()


def test_recover_takes_only_this_nodes_jobs(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    mine, theirs = store.submit(job()), store.submit(job())
    store.claim(mine, "node-a", 0)
    store.claim(theirs, "node-b", 0)
    assert store.recover("node-a") == ([mine.id], [])
    back = store.get(mine.id)
    assert back is not None and back.state == "queued" and back.owner == ""
    other = store.get(theirs.id)
    assert other is not None and other.state == "running"
    store.close()


def test_an_older_database_gains_the_owner_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,"
        " kind TEXT NOT NULL, state TEXT NOT NULL, model TEXT NOT NULL, load TEXT NOT NULL,"
        " params TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,"
        " attempts INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT);"
        "INSERT INTO jobs (id, kind, state, model, load, params, created, attempts)"
        " VALUES ('old', 'txt2img', 'running', 'm', '{}', '{}', 1.0, 1);"
    )
    db.close()
    store = SQLiteJobStore(path)
    assert store.recover("any-node") == (["old"], [])  # no owner yet: from before owners
    j = store.get("old")
    assert j is not None and j.state == "queued" and j.owner == ""
    store.close()
