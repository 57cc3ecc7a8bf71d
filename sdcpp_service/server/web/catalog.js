// What the server offers: models (with what each needs and which modes it takes), samplers,
// schedulers, LoRAs, upscalers, ControlNets, and the system/worker panel.

import * as api from "./api.js";

const $ = (id) => document.getElementById(id);
const EDIT_ARCHS = ["flux2", "flux2_klein", "qwen_image"];

export const state = { models: [], infos: new Map(), missing: new Map(), byKind: {} };

function fillSelect(select, items, keep = true) {
  const old = select.value;
  const fixed = [...select.options].filter((o) => o.dataset.fixed !== undefined);
  select.replaceChildren(...fixed);
  for (const { value, label, alias } of items) {
    const option = new Option(label, value);
    if (alias) option.dataset.alias = alias;
    select.add(option);
  }
  if (keep && [...select.options].some((o) => o.value === old)) select.value = old;
}

/** The modes a model takes (a mode it does not take is not offered). */
export function modesOf(entry, info) {
  const arch = entry?.arch || "";
  if (!entry) return ["upscale"];
  if (arch.startsWith("wan")) return ["video", "upscale"];
  const modes = ["txt2img", "img2img", "inpaint"];
  if (state.byKind.controlnet?.length && !arch.startsWith("sdxs")) modes.push("controlnet");
  const variant = `${entry.variant || ""} ${info?.variant || ""}`.toLowerCase();
  if (EDIT_ARCHS.includes(arch) || /kontext|edit/.test(variant)) modes.push("edit");
  modes.push("upscale");
  return modes;
}

/** What a model still lacks in the model folders (the server's check, with its pull hint). */
export function lacking(name) {
  return state.missing.get(name) || [];
}

export async function loadModels() {
  const { models } = await api.get("/api/v1/models");
  state.models = models;
  state.byKind = {};
  for (const m of models) (state.byKind[m.kind] ||= []).push(m);
  const main = models.filter((m) => m.kind === "checkpoint" || m.kind === "diffusion_model");
  fillSelect(
    $("model"),
    main.map((m) => ({
      value: m.name,
      label: `${m.name} — ${[m.arch, m.variant].filter(Boolean).join(" ")}${m.loaded ? " (warm)" : ""}`,
    })),
  );
  if (!main.length) $("model").add(new Option("no models found: add files to the model folder", ""));
  const loras = state.byKind.lora || [];
  $("lora-row").hidden = !loras.length;
  fillSelect($("lora-pick"), loras.map((m) => ({ value: m.name, label: m.name })));
  fillSelect($("control_net"), (state.byKind.controlnet || []).map((m) => ({ value: m.name, label: m.name })));
  const ups = (state.byKind.upscaler || []).map((m) => ({ value: m.name, label: m.name }));
  fillSelect($("upscaler"), [...ups, { value: "lanczos", label: "Lanczos" }, { value: "nearest", label: "Nearest" }]);
  return main;
}

/** Details of one model (defaults, needs), cached. */
export async function modelInfo(name) {
  if (!name) return null;
  if (!state.infos.has(name)) {
    const view = await api.get(`/api/v1/models/${encodeURIComponent(name)}`);
    state.infos.set(name, view.info || null);
    state.missing.set(name, view.missing || []);
  }
  return state.infos.get(name);
}

export function entry(name) {
  return state.models.find((m) => m.name === name) || null;
}

/** Size presets around the model's default size (same area, common aspect ratios). */
export function sizePresets(defaults) {
  const w = defaults?.width || 512;
  const h = defaults?.height || 512;
  const area = w * h;
  const step = 64;
  const round = (v) => Math.max(step, Math.round(v / step) * step);
  const ratios = [
    ["1:1", 1],
    ["4:3", 4 / 3],
    ["3:4", 3 / 4],
    ["16:9", 16 / 9],
    ["9:16", 9 / 16],
  ];
  const out = [{ label: `default ${w}×${h}`, w, h }];
  for (const [name, r] of ratios) {
    const pw = round(Math.sqrt(area * r));
    const ph = round(Math.sqrt(area / r));
    if (!out.some((p) => p.w === pw && p.h === ph)) out.push({ label: `${name} ${pw}×${ph}`, w: pw, h: ph });
  }
  for (const s of [64, 128, 256]) {
    if (s < Math.min(w, h)) out.push({ label: `small ${s}×${s}`, w: s, h: s });
  }
  return out;
}

export async function loadOptions() {
  const [samplers, schedulers] = await Promise.all([
    api.get("/sdapi/v1/samplers"),
    api.get("/sdapi/v1/schedulers"),
  ]);
  const sampler = $("sampler");
  sampler.options[0].dataset.fixed = "";
  fillSelect(sampler, samplers.map((s) => ({ value: s.aliases?.[0] || s.name, label: s.name })));
  const scheduler = $("scheduler");
  scheduler.options[0].dataset.fixed = "";
  fillSelect(scheduler, schedulers.map((s) => ({ value: s.name, label: s.label || s.name })));
}

const gb = (bytes) => (bytes ? `${(bytes / 2 ** 30).toFixed(1)} GB` : "—");

/** System facts and the workers (the pool's route when the server has it, else the one worker). */
export async function loadSystem(config) {
  const system = await api.get("/system");
  const health = await api.get("/health");
  const engine = system.engine || {};
  const mem = system.memory || {};
  const facts = {
    Backend: (engine.backends || []).join(", ") || "cpu",
    Engine: `${engine.bindings_version || "?"} (${engine.engine_commit || "?"})`,
    Threads: system.threads,
    Memory: `${gb(mem.available_bytes)} free of ${gb(mem.total_bytes)}`,
    Queued: system.queued,
  };
  $("system-facts").replaceChildren(
    ...Object.entries(facts).flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = String(v ?? "—");
      return [dt, dd];
    }),
  );
  let workers = null;
  if (config.workers) workers = (await api.getOptional("/api/v1/workers"))?.workers || null;
  if (!workers) {
    workers = [
      {
        id: 0,
        state: health.worker,
        pid: system.worker?.pid,
        model_name: system.loaded_model,
        resident_bytes: mem.worker_rss_bytes,
      },
    ];
  }
  $("workers").replaceChildren(
    ...workers.map((w) => {
      const li = document.createElement("li");
      const model = w.model_name || "no model loaded";
      li.textContent = `worker ${w.id ?? 0}: ${w.state ?? "?"} · ${model} · ${gb(w.resident_bytes)}`;
      return li;
    }),
  );
  const warm = workers.map((w) => w.model_name).filter(Boolean);
  $("system-summary").textContent =
    `${facts.Backend} · ${workers.length} worker${workers.length === 1 ? "" : "s"}` +
    (warm.length ? ` · warm: ${[...new Set(warm)].join(", ")}` : "");
  return { system, workers };
}
