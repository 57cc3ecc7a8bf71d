// The queue panel and the progress bar: every queued or running job (this page's and other
// clients'), followed over its event stream; cancel buttons; the live preview.

import * as api from "./api.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 3000;

export class Queue {
  /** `onFinished(jobId, status, data)` runs once per job that ends while watched. */
  constructor(onFinished) {
    this.jobs = new Map(); // id → {job, status, position, progress, controller}
    this.onFinished = onFinished;
    this.timer = null;
  }

  start() {
    this.refresh();
    this.timer = setInterval(() => this.refresh(), POLL_MS);
  }

  /** Pick up jobs other clients submitted (and recover after a reload). */
  async refresh() {
    try {
      const [running, queued] = await Promise.all([
        api.get("/api/v1/jobs?status=running&limit=20"),
        api.get("/api/v1/jobs?status=queued&limit=100"),
      ]);
      for (const job of [...running.jobs, ...queued.jobs]) this.track(job);
    } catch {
      // the next poll tries again; errors show where the user acted
    }
  }

  /** Follow a job (from a submission's 202 view or a listing). */
  track(job) {
    if (this.jobs.has(job.id) || ["completed", "failed", "cancelled"].includes(job.status)) return;
    const entry = { job, status: job.status, position: job.position, progress: job.progress };
    entry.controller = new AbortController();
    this.jobs.set(job.id, entry);
    this.render();
    this.follow(entry);
  }

  async follow(entry) {
    const url = entry.job.urls?.events || `/api/v1/jobs/${entry.job.id}/events`;
    let ended = null;
    try {
      await api.watch(
        url,
        (kind, data) => {
          if (kind === "queued") {
            entry.status = "queued";
            entry.position = data.position;
          } else if (kind === "started") {
            entry.status = "running";
            entry.progress = null;
          } else if (kind === "progress") {
            entry.status = "running";
            entry.progress = data;
          } else if (kind === "preview") {
            this.preview(data.image);
          } else if (["completed", "failed", "cancelled"].includes(kind)) {
            ended = [kind, data];
          }
          this.render();
        },
        entry.controller.signal,
      );
    } catch (err) {
      ended = ended || ["failed", { error: err.message }];
    }
    if (!ended) {
      // stream closed without an end (server restart): ask once
      try {
        const view = await api.get(`/api/v1/jobs/${entry.job.id}`);
        if (["queued", "running"].includes(view.status)) {
          this.jobs.delete(entry.job.id);
          setTimeout(() => this.track(view), 1000);
          return;
        }
        ended = [view.status, view];
      } catch {
        ended = ["failed", {}];
      }
    }
    this.jobs.delete(entry.job.id);
    this.render();
    this.onFinished(entry.job.id, ended[0], ended[1]);
  }

  running() {
    return [...this.jobs.values()].find((e) => e.status === "running") || null;
  }

  async cancel(id) {
    await api.post(`/api/v1/jobs/${id}/cancel`);
  }

  preview(image) {
    const img = $("preview-image");
    img.src = image;
    img.hidden = false;
  }

  render() {
    const list = $("queue-list");
    const items = [...this.jobs.values()].sort(
      (a, b) => (a.status === "running" ? -1 : 0) - (b.status === "running" ? -1 : 0) ||
        (a.position ?? 0) - (b.position ?? 0),
    );
    list.replaceChildren(
      ...items.map((e) => {
        const li = document.createElement("li");
        li.dataset.job = e.job.id;
        li.dataset.status = e.status;
        const text = document.createElement("span");
        const prompt = e.job.params?.prompt || "";
        const where = e.status === "running" ? "running" : `queued #${(e.position ?? 0) + 1}`;
        text.textContent = `${e.job.kind} · ${prompt.slice(0, 40) || e.job.model || ""} · ${where}`;
        const cancel = document.createElement("button");
        cancel.type = "button";
        cancel.textContent = "Cancel";
        cancel.setAttribute("aria-label", `Cancel ${e.job.kind} job ${prompt.slice(0, 20)}`);
        cancel.addEventListener("click", () => this.cancel(e.job.id).catch(() => {}));
        li.append(text, cancel);
        return li;
      }),
    );
    $("queue-empty").hidden = items.length > 0;
    this.renderProgress();
  }

  renderProgress() {
    const bar = $("progress");
    const text = $("progress-text");
    const run = this.running();
    if (!run) {
      bar.value = 0;
      text.textContent = this.jobs.size ? "waiting…" : "idle";
      if (!this.jobs.size) $("preview-image").hidden = true;
      return;
    }
    const p = run.progress;
    if (!p || !p.total) {
      bar.removeAttribute("value");
      text.textContent = "loading…";
      return;
    }
    bar.max = p.total;
    bar.value = p.step;
    const eta = p.eta > 0 ? ` · ETA ${p.eta.toFixed(1)} s` : "";
    const phase = p.phase && p.phase !== "sampling" ? ` (${p.phase})` : "";
    text.textContent = `step ${p.step}/${p.total}${eta}${phase}`;
  }
}
