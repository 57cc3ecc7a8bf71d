// The generation form: which fields each mode sends, reading and filling them, keeping them in
// localStorage, and showing the API's errors next to the field they name.

const STORE = "sdcpp.form";
export const form = document.getElementById("gen");

const BASE = ["prompt", "negative_prompt", "steps", "cfg_scale", "sampler", "scheduler", "seed"];
const SIZE = ["width", "height"];
const EXTRA = ["batch", "vae_tiling", "cache_mode", "clip_skip", "preview"];
const HIRES = ["hires", "hires_scale", "hires_upscaler", "hires_steps", "hires_denoise"];
/** Mode → the named form fields its request carries (images are added by the app). */
export const MODE_FIELDS = {
  txt2img: [...BASE, ...SIZE, ...EXTRA, ...HIRES],
  img2img: [...BASE, ...SIZE, ...EXTRA, "strength"],
  inpaint: [...BASE, ...SIZE, ...EXTRA, "strength"],
  controlnet: [...BASE, ...SIZE, ...EXTRA, "control_net", "control_strength", "canny"],
  edit: [...BASE, ...SIZE, ...EXTRA],
  upscale: ["scale"],
  video: [...BASE, ...SIZE, "vae_tiling", "cache_mode", "clip_skip", "frames", "fps", "format"],
};
/** Fields kept across reloads (not images, not the mode's images). */
const KEPT = [...new Set(Object.values(MODE_FIELDS).flat()), "kind", "model"];
/** Infotext / job-parameter names → form field names. */
const ALIASES = {
  negative: "negative_prompt",
  cfg: "cfg_scale",
  "cfg scale": "cfg_scale",
  "sampler name": "sampler",
  "schedule type": "scheduler",
  "denoising strength": "strength",
  "batch size": "batch",
  "clip skip": "clip_skip",
  "hires upscale": "hires_scale",
  "hires steps": "hires_steps",
  "hires upscaler": "hires_upscaler",
};

export const kind = () => form.elements.kind.value;

function element(name) {
  const el = form.elements.namedItem(name);
  return el instanceof RadioNodeList ? null : el;
}

function read(el) {
  if (el.type === "checkbox") return el.checked;
  if (el.type === "number" || el.type === "range") return el.value === "" ? null : Number(el.value);
  return el.value;
}

/** The request fields of the current mode (empty optional values left out). */
export function values() {
  const out = {};
  for (const name of MODE_FIELDS[kind()]) {
    const el = element(name);
    if (!el) continue;
    const value = read(el);
    if (value === null || value === "") continue;
    if (name.startsWith("hires_") && !form.elements.hires.checked) continue;
    if (name === "hires" && !value) continue;
    out[name] = value;
  }
  return out;
}

function setSelect(el, value) {
  const text = String(value);
  const option = [...el.options].find(
    (o) => o.value === text || o.textContent === text || o.dataset.alias === text,
  );
  if (option) el.value = option.value;
}

function write(el, value) {
  if (el.type === "checkbox") el.checked = value === true || value === "True" || value === "true";
  else if (el.tagName === "SELECT") setSelect(el, value ?? "");
  else el.value = value ?? "";
  el.dispatchEvent(new Event("input", { bubbles: true }));
}

/** Fill the form from job params or parsed infotext; unknown keys are ignored. Returns names set. */
export function fill(params) {
  const set = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || typeof value === "object") continue;
    const name = ALIASES[key.toLowerCase()] || key.toLowerCase().replace(/ /g, "_");
    if (name === "kind") {
      setKind(value);
      set.push(name);
      continue;
    }
    const el = element(name);
    if (!el || el.type === "file") continue;
    write(el, value);
    set.push(name);
  }
  if (params.Size || params.size) {
    const [w, h] = String(params.Size || params.size).split("x").map(Number);
    if (w && h) {
      write(element("width"), w);
      write(element("height"), h);
      set.push("width", "height");
    }
  }
  save();
  return set;
}

/** A1111 infotext (`prompt\nNegative prompt: …\nSteps: 20, Sampler: …`) → {key: value}. */
export function parseInfotext(text) {
  const lines = text.trim().split("\n");
  let last = lines.length - 1;
  const out = {};
  if (!/(^|, )Steps: /.test(lines[last])) last = lines.length;
  const negAt = lines.findIndex((l) => l.startsWith("Negative prompt:"));
  const promptEnd = negAt >= 0 ? negAt : last;
  out.prompt = lines.slice(0, promptEnd).join("\n");
  if (negAt >= 0) {
    out.negative_prompt = lines.slice(negAt, last).join("\n").replace(/^Negative prompt:\s*/, "");
  }
  if (last < lines.length) {
    const re = /\s*([\w ]+?):\s*("(?:\\.|[^"])*"|[^,]*)(?:,|$)/g;
    for (const m of lines[last].matchAll(re)) {
      let v = m[2].trim();
      if (v.startsWith('"')) v = JSON.parse(v);
      out[m[1]] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    }
  }
  return out;
}

export function setKind(value) {
  const radio = form.querySelector(`input[name="kind"][value="${CSS.escape(value)}"]`);
  if (radio && !radio.disabled) {
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
  }
}

/** Show only the parts of the form the current mode uses. */
export function showMode() {
  const k = kind();
  for (const el of form.querySelectorAll("[data-modes], [data-not]")) {
    const off = el.dataset.modes
      ? !el.dataset.modes.split(" ").includes(k)
      : el.dataset.not.split(" ").includes(k);
    el.classList.toggle("mode-off", off);
  }
}

export function save() {
  const data = {};
  for (const name of KEPT) {
    if (name === "kind") data.kind = kind();
    else {
      const el = element(name);
      if (el) data[name] = el.type === "checkbox" ? el.checked : el.value;
    }
  }
  localStorage.setItem(STORE, JSON.stringify(data));
}

/** Restore the saved form (after the option lists are filled); false when nothing was saved. */
export function restore() {
  let data = null;
  try {
    data = JSON.parse(localStorage.getItem(STORE) || "null");
  } catch {
    data = null;
  }
  if (!data || typeof data !== "object") return false;
  for (const [name, value] of Object.entries(data)) {
    if (name === "kind") continue;
    const el = element(name);
    if (!el || el.type === "file") continue;
    if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === value)) continue;
    if (el.type === "checkbox") el.checked = Boolean(value);
    else el.value = value;
  }
  if (data.kind) setKind(data.kind);
  return true;
}

/** Errors from the API: each next to its field (or at the form's foot). */
export function showErrors(message, fields = {}) {
  clearErrors();
  let placed = 0;
  for (const [name, text] of Object.entries(fields)) {
    const base = name.split(".")[0];
    const field = form.querySelector(`[data-for="${CSS.escape(base)}"]`);
    if (!field || !field.checkVisibility()) continue;
    const p = document.createElement("p");
    p.className = "error field-error";
    p.textContent = `${base}: ${text}`;
    field.append(p);
    field.classList.add("invalid");
    placed++;
  }
  const rest = Object.keys(fields).length > placed || !placed;
  document.getElementById("form-error").textContent = rest ? message : "";
}

export function clearErrors() {
  for (const p of form.querySelectorAll(".field-error")) p.remove();
  for (const f of form.querySelectorAll(".invalid")) f.classList.remove("invalid");
  document.getElementById("form-error").textContent = "";
}
