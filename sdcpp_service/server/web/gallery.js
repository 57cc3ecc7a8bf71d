// The gallery: finished jobs newest first, as thumbnails, a page at a time; a dialog with the
// full image or video and its parameters (reuse, download, delete).

import * as api from "./api.js";

const $ = (id) => document.getElementById(id);
const PAGE = 12;
const THUMB = 256;

export class Gallery {
  /** `onReuse(job)` fills the form from a job. */
  constructor(onReuse) {
    this.offset = 0;
    this.total = 0;
    this.onReuse = onReuse;
    this.current = null;
    $("page-prev").addEventListener("click", () => this.page(-PAGE));
    $("page-next").addEventListener("click", () => this.page(PAGE));
    $("detail-close").addEventListener("click", () => $("detail").close());
    $("detail-reuse").addEventListener("click", () => {
      $("detail").close();
      if (this.current) this.onReuse(this.current);
    });
    $("detail-delete").addEventListener("click", () => this.remove());
  }

  page(delta) {
    this.offset = Math.max(0, this.offset + delta);
    return this.load();
  }

  async load() {
    const data = await api.get(`/api/v1/jobs?status=completed&limit=${PAGE}&offset=${this.offset}`);
    this.total = data.total;
    if (!data.jobs.length && this.offset > 0) {
      this.offset = Math.max(0, this.offset - PAGE);
      return this.load();
    }
    const cards = [];
    for (const job of data.jobs) {
      job.outputs.forEach((out, i) => cards.push(this.card(job, out, i)));
    }
    $("gallery-grid").replaceChildren(...(await Promise.all(cards)));
    const last = Math.min(this.offset + PAGE, this.total);
    $("page-info").textContent = this.total ? `${this.offset + 1}–${last} of ${this.total}` : "nothing yet";
    $("page-prev").disabled = this.offset === 0;
    $("page-next").disabled = last >= this.total;
  }

  async card(job, out, index) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "card";
    button.dataset.job = job.id;
    const label = `${job.kind}: ${job.params?.prompt || job.model || ""} (seed ${out.seed ?? "?"})`;
    button.setAttribute("aria-label", label);
    button.title = label;
    const video = (out.media_type || "").startsWith("video/");
    if (video) {
      const tag = document.createElement("span");
      tag.className = "video-tag";
      tag.textContent = `▶ ${out.frames ?? ""} frames`;
      button.append(tag);
    } else {
      const img = document.createElement("img");
      img.alt = label;
      img.loading = "lazy";
      img.width = THUMB;
      img.height = Math.round((THUMB * (out.height || 1)) / (out.width || 1));
      img.src = await api.mediaUrl(`${out.url}?thumb=${THUMB}`).catch(() => "");
      button.append(img);
    }
    button.addEventListener("click", () => this.open(job, out, index));
    return button;
  }

  async open(job, out) {
    this.current = job;
    const media = $("detail-media");
    const url = await api.mediaUrl(out.url);
    let el;
    if ((out.media_type || "").startsWith("video/")) {
      el = document.createElement("video");
      el.controls = true;
      el.loop = true;
      el.autoplay = true;
      el.muted = true;
    } else {
      el = document.createElement("img");
      el.alt = job.params?.prompt || "output";
    }
    el.src = url;
    media.replaceChildren(el);
    const params = Object.entries(job.params || {})
      .filter(([, v]) => v !== null && !(Array.isArray(v) && !v.length))
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
    const header = [`${job.kind} · ${job.model || ""} · seed ${out.seed ?? "?"}`];
    if (job.timings?.running_seconds) header.push(`took ${job.timings.running_seconds.toFixed(1)} s`);
    $("detail-info").textContent = [header.join(" · "), "", out.infotext || params.join("\n")].join("\n");
    const link = $("detail-download");
    link.href = url;
    link.download = out.name;
    $("detail").showModal();
  }

  async remove() {
    if (!this.current) return;
    await api.del(`/api/v1/jobs/${this.current.id}`);
    $("detail").close();
    this.current = null;
    await this.load();
  }
}
