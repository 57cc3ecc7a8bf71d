// The page: wires the API client, form, catalog, mask canvas, queue and gallery together.

import * as api from "./api.js";
import * as catalog from "./catalog.js";
import * as estimate from "./estimate.js";
import * as F from "./form.js";
import { Gallery } from "./gallery.js";
import { images, updateCanvas, wireInputs } from "./inputs.js";
import { MaskCanvas } from "./mask.js";
import { Queue } from "./queue.js";

const $ = (id) => document.getElementById(id);
const config = api.config();
let lastSeed = null;

const mask = new MaskCanvas($("mask-canvas"), { brush: $("brush"), eraser: $("eraser") });
const queue = new Queue(finished);
const gallery = new Gallery(reuse);

// -- credentials --------------------------------------------------------------------------

function askCredentials() {
  const dialog = $("auth-dialog");
  return new Promise((resolve) => {
    const form = $("auth-form");
    const done = (e) => {
      e.preventDefault();
      const key = $("auth-key").value.trim();
      const user = $("auth-user").value.trim();
      const password = $("auth-password").value;
      if (!key && !(user && password)) {
        $("auth-error").textContent = "Enter an API key, or a user and password.";
        return;
      }
      api.auth.set(key ? api.auth.bearer(key) : api.auth.basic(user, password));
      form.removeEventListener("submit", done);
      dialog.close();
      resolve();
    };
    api.auth.set("");
    $("auth-error").textContent = "";
    form.addEventListener("submit", done);
    if (!dialog.open) dialog.showModal();
  });
}
api.onUnauthorized(askCredentials);

// -- models and modes -----------------------------------------------------------------------

async function modelChanged(applyDefaults) {
  const name = $("model").value;
  const entry = catalog.entry(name);
  let info = null;
  try {
    info = await catalog.modelInfo(name);
  } catch (err) {
    $("model-info").textContent = err.message;
  }
  const modes = catalog.modesOf(entry, info);
  for (const radio of F.form.querySelectorAll('input[name="kind"]')) {
    radio.disabled = !modes.includes(radio.value);
    radio.parentElement.hidden = radio.disabled;
  }
  if (!modes.includes(F.kind())) F.setKind(modes[0]);
  const defaults = info?.defaults || {};
  const presets = catalog.sizePresets(defaults);
  $("size-preset").replaceChildren(
    new Option("custom", ""),
    ...presets.map((p) => new Option(p.label, `${p.w}x${p.h}`)),
  );
  if (applyDefaults && info) {
    F.fill({
      width: defaults.width,
      height: defaults.height,
      steps: defaults.steps,
      cfg_scale: defaults.cfg_scale,
      sampler: defaults.sampler || "",
      frames: defaults.video_frames,
    });
  }
  syncPreset();
  const lines = [];
  if (entry) {
    const what = [entry.arch, entry.variant, info?.engine_version].filter(Boolean).join(" · ");
    lines.push(`${what}${entry.loaded ? " · warm (loaded)" : ""}`);
  }
  const lacks = catalog.lacking(name);
  for (const need of lacks) {
    const fix = need.hint ? `run ${need.hint}` : "add one to the model folder";
    lines.push(`lacks a ${need.component}: ${fix}`);
  }
  $("model-without").replaceChildren(
    ...lacks
      .filter((need) => need.optional)
      .map((need) => {
        const label = document.createElement("label");
        label.className = "check";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.dataset.without = need.field;
        label.append(box, ` run without the ${need.component} (lower quality)`);
        return label;
      }),
  );
  if (info && info.supported === false) lines.push(`not supported: ${info.reason}`);
  $("model-info").textContent = lines.join("\n");
  F.showMode();
  updateCanvas();
}

function syncPreset() {
  const value = `${$("width").value}x${$("height").value}`;
  const has = [...$("size-preset").options].some((o) => o.value === value);
  $("size-preset").value = has ? value : "";
}

// -- submitting -----------------------------------------------------------------------------

async function body() {
  const kind = F.kind();
  if (kind === "upscale") {
    const out = { kind, image: images.init_image, model: $("upscaler").value };
    return { ...out, ...F.values() };
  }
  const out = { kind, model: $("model").value || undefined, ...F.values() };
  if (kind === "txt2img" || kind === "img2img" || kind === "inpaint" || kind === "edit") {
    if (out.preview && out.preview !== "none") out.preview_interval = 1;
  }
  if (["img2img", "inpaint", "video"].includes(kind) && images.init_image) {
    out.init_image = images.init_image;
  }
  if (kind === "inpaint" && mask.hasPaint()) out.mask = mask.toDataURL();
  if (kind === "controlnet") out.control_image = images.control_image;
  if (kind === "edit") out.ref_images = images.ref_images;
  if (kind === "video" && images.end_image) out.end_image = images.end_image;
  for (const box of document.querySelectorAll("#model-without input:checked")) {
    out[box.dataset.without] = false;
  }
  return out;
}

async function generate(e) {
  e?.preventDefault();
  F.clearErrors();
  F.save();
  try {
    const view = await api.post("/api/v1/jobs", await body());
    queue.track(view);
  } catch (err) {
    F.showErrors(err.message, err.fields);
  }
}

function finished(id, status, data) {
  if (status === "completed") {
    if (data.seeds?.length) lastSeed = data.seeds[0];
    gallery.load().catch(() => {});
    catalog.loadModels().then(() => modelChanged(false)).catch(() => {});
  } else if (status === "failed") {
    F.showErrors(`job failed: ${data.error?.message || data.error || "unknown error"}`);
  }
  catalog.loadSystem(config).catch(() => {});
}

async function reuse(job) {
  if (job.model && catalog.entry(job.model)) {
    $("model").value = job.model;
    await modelChanged(false);
  }
  F.setKind(job.kind);
  F.fill(job.params || {});
  syncPreset();
  F.form.scrollIntoView({ behavior: "smooth", block: "start" });
  $("prompt").focus();
}

// -- wiring ---------------------------------------------------------------------------------

async function infotext(params) {
  if (params.Model && catalog.entry(params.Model)) {
    $("model").value = params.Model;
    await modelChanged(false);
  }
  F.fill(params);
  syncPreset();
}

function wire() {
  wireInputs(mask, infotext);
  F.form.addEventListener("submit", generate);
  F.form.addEventListener("change", (e) => {
    if (e.target.name === "kind") {
      F.showMode();
      updateCanvas();
    }
    F.save();
    estimate.refresh(body);
  });
  F.form.addEventListener("input", () => estimate.refresh(body));
  $("model").addEventListener("change", () => modelChanged(true));
  $("size-preset").addEventListener("change", () => {
    const [w, h] = $("size-preset").value.split("x").map(Number);
    if (w && h) F.fill({ width: w, height: h });
  });
  for (const id of ["width", "height"]) $(id).addEventListener("input", syncPreset);
  $("strength").addEventListener("input", () => {
    $("strength-out").textContent = Number($("strength").value).toFixed(2);
  });
  $("seed-random").addEventListener("click", () => F.fill({ seed: -1 }));
  $("seed-last").addEventListener("click", () => lastSeed !== null && F.fill({ seed: lastSeed }));
  $("seed-copy").addEventListener("click", () => {
    navigator.clipboard?.writeText($("seed").value).catch(() => {});
  });
  $("lora-add").addEventListener("click", () => {
    const prompt = $("prompt");
    const tag = `<lora:${$("lora-pick").value}:${$("lora-weight").value}>`;
    const at = prompt.selectionEnd ?? prompt.value.length;
    const sep = at && !/\s$/.test(prompt.value.slice(0, at)) ? " " : "";
    prompt.value = prompt.value.slice(0, at) + sep + tag + prompt.value.slice(at);
    F.save();
  });
  $("system-toggle").addEventListener("click", () => {
    const panel = $("system");
    panel.hidden = !panel.hidden;
    $("system-toggle").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) catalog.loadSystem(config).catch(() => {});
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(e);
    else if (e.key === "Escape" && !document.querySelector("dialog[open]")) {
      const run = queue.running();
      if (run) queue.cancel(run.job.id).catch(() => {});
    }
  });
}

/** Number inputs take the bounds the server's rules declare (``config.rules``). */
function applyRules() {
  for (const [name, [lo, hi]] of Object.entries(config.rules || {})) {
    const el = F.form.elements.namedItem(name);
    if (!(el instanceof HTMLInputElement) || el.type !== "number") continue;
    if (lo !== null) el.min = String(lo);
    if (hi !== null) el.max = String(hi);
  }
}

async function main() {
  applyRules();
  wire();
  if ((config.auth?.bearer || config.auth?.basic) && !api.auth.get()) await askCredentials();
  await catalog.loadOptions();
  await catalog.loadModels();
  const saved = F.restore();
  await modelChanged(!saved);
  estimate.refresh(body);
  queue.start();
  await Promise.all([gallery.load(), catalog.loadSystem(config)]);
  document.body.dataset.ready = "true";
}

main().catch((err) => F.showErrors(`could not reach the server: ${err.message}`));
