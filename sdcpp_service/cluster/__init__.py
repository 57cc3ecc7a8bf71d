"""Many hosts on one PostgreSQL job queue (procrastinate).

::

    clients ──► API node(s): sdcpp serve --queue URL      (same routes, same URLs)
                    │  submit: row in sdcpp_jobs + a procrastinate job on queue "model:NAME"
                    │          (or "any"); SSE/progress from LISTEN sdcpp_events
                    ▼
               PostgreSQL: procrastinate_* (queues, worker heartbeats, abort)
                           sdcpp_jobs (state, latest progress/preview), sdcpp_outputs (bytea),
                           sdcpp_workers (host, models, slots, heartbeat)
                    ▲
                    │  fetch from its queues, run on the engine pool, NOTIFY progress,
                    │  store outputs + result in one transaction (only while it holds the claim)
               GPU host(s): sdcpp worker --queue URL --models DIR --preload a,b [--any]

Modules: :mod:`.schema` (DDL, ``migrate``, ``status``), :mod:`.store` (the API node's
synchronous access), :mod:`.queues` (the procrastinate app, queue names), :mod:`.node` (the API
node's service), :mod:`.retention` (its outputs cache and retention), :mod:`.listen` (its
notifications), :mod:`.stream` (SSE events), :mod:`.runner` (the worker host),
:mod:`.claims` (a worker's claim and outcome statements), :mod:`.publish` (its events),
:mod:`.localize` (a job's paths as the worker's files), :mod:`.deathsignal` (engines die with
their worker), :mod:`.reaper` (stalled jobs: re-run once, then ``worker_lost``).
"""
