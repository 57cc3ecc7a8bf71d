// Image inputs: the init image (drop, paste or pick; the mask canvas sits on it), control,
// end and reference images, and a PNG dropped anywhere else: its infotext fills the form.

import * as api from "./api.js";
import * as F from "./form.js";

const $ = (id) => document.getElementById(id);
export const images = { init_image: null, control_image: null, end_image: null, ref_images: [] };

let mask = null;
let onInfotext = null;

export async function setInit(file) {
  if (!file) return;
  images.init_image = await api.dataUrl(file);
  const img = $("init-preview");
  img.src = images.init_image;
  await img.decode();
  mask.reset(img.naturalWidth, img.naturalHeight);
  // the output takes the image's size, on the model's 64-pixel grid
  const grid = (v) => Math.max(64, Math.round(v / 64) * 64);
  F.fill({ width: grid(img.naturalWidth), height: grid(img.naturalHeight) });
  $("canvas-wrap").hidden = false;
  $("init-clear").hidden = false;
  updateCanvas();
}

function clearInit() {
  images.init_image = null;
  $("init-file").value = "";
  $("canvas-wrap").hidden = true;
  $("init-clear").hidden = true;
  mask.reset(0, 0);
}

/** The mask canvas shows in inpaint mode only. */
export function updateCanvas() {
  $("mask-canvas").hidden = F.kind() !== "inpaint";
  $("init-label").textContent = F.kind() === "video" ? "Start image (optional)" : "Image";
}

async function readPngInfo(file) {
  const image = await api.dataUrl(file);
  const info = await api.post("/sdapi/v1/png-info", { image });
  if (!info.info) {
    F.showErrors(`${file.name} carries no generation parameters`);
    return;
  }
  F.clearErrors();
  await onInfotext({ ...F.parseInfotext(info.info), ...(info.parameters || {}) });
}

function imageOf(list) {
  return [...(list || [])].find((f) => f.type.startsWith("image/"));
}

async function dropped(e) {
  e.preventDefault();
  $("drop-overlay").hidden = true;
  const file = imageOf(e.dataTransfer?.files);
  if (!file) return;
  try {
    if (e.target.closest?.("#init-drop")) await setInit(file);
    else if (file.type === "image/png") await readPngInfo(file);
    else if ($("init-drop").checkVisibility()) await setInit(file);
  } catch (err) {
    F.showErrors(err.message, err.fields);
  }
}

const asDataUrl = async (file) => (file ? api.dataUrl(file) : null);

/** `infotext(params)` applies parsed PNG parameters to the form. */
export function wireInputs(maskCanvas, infotext) {
  mask = maskCanvas;
  onInfotext = infotext;
  $("init-file").addEventListener("change", (e) => setInit(e.target.files[0]));
  $("init-clear").addEventListener("click", clearInit);
  $("control-file").addEventListener("change", async (e) => {
    images.control_image = await asDataUrl(e.target.files[0]);
  });
  $("end-file").addEventListener("change", async (e) => {
    images.end_image = await asDataUrl(e.target.files[0]);
  });
  $("ref-files").addEventListener("change", async (e) => {
    images.ref_images = await Promise.all([...e.target.files].map(api.dataUrl));
  });
  $("mask-undo").addEventListener("click", () => mask.undo());
  $("mask-clear").addEventListener("click", () => mask.clear());
  $("mask-invert").addEventListener("click", () => mask.invert());
  $("mask-file").addEventListener("change", (e) => e.target.files[0] && mask.load(e.target.files[0]));
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    if (!e.target.closest?.("#init-drop")) $("drop-overlay").hidden = false;
  });
  document.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) $("drop-overlay").hidden = true;
  });
  document.addEventListener("drop", dropped);
  document.addEventListener("paste", (e) => {
    const file = imageOf(e.clipboardData?.files);
    if (file && $("init-drop").checkVisibility()) setInit(file);
  });
}
