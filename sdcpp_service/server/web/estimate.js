// The memory estimate beside Generate: POST /api/v1/estimate for the form's job on each change
// (debounced); the switches the server would turn on, or why the job cannot fit.

import * as api from "./api.js";

const el = document.getElementById("estimate");
const gib = (n) => `${(n / 2 ** 30).toFixed(2)} GiB`;
let timer = null;
let asked = 0;

/** One line for an estimate answer: {text, bad}. */
export function describe(view) {
  if (view.fits === false) return { text: `does not fit: ${view.message}`, bad: true };
  const est = view.estimate;
  if (!est) return { text: view.message || "", bad: false };
  let text = `≈ ${gib(est.peak_ram_bytes)} RAM`;
  if (est.peak_device_bytes) text += ` + ${gib(est.peak_device_bytes)} ${est.backend}`;
  text += ` of ${gib(view.budget_bytes)}`;
  if (view.changed?.length) text += ` · with ${view.changed.join(", ")}`;
  if (!est.measured) text += " (a guess)";
  return { text, bad: false };
}

/** Ask again for the job ``body()`` (an async function) builds, once the form is still. */
export function refresh(body) {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    const mine = ++asked;
    try {
      const job = await body();
      if (job.kind === "upscale") {  // its size is the image's: estimated when it runs
        el.textContent = "";
        return;
      }
      const view = await api.post("/api/v1/estimate", job);
      if (mine !== asked) return;
      const { text, bad } = describe(view);
      el.textContent = text;
      el.classList.toggle("error", bad);
      el.title = view.estimate ? `peak in ${view.estimate.peak_phase}` : "";
    } catch {
      if (mine === asked) el.textContent = "";  // the form's own errors show on Generate
    }
  }, 300);
}
