// The mask canvas: paint over the input image where it should change. The canvas has the
// image's own resolution and sits on it, semi-transparent; the exported mask is white where
// painted and black elsewhere (the API's convention).

const UNDO_DEPTH = 30;
const INK = "rgb(255, 48, 96)";

export class MaskCanvas {
  constructor(canvas, { brush, eraser }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.brush = brush;
    this.eraser = eraser;
    this.undos = [];
    this.painted = false;
    this.last = null;
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const type of ["pointerup", "pointercancel", "pointerleave"]) {
      canvas.addEventListener(type, () => {
        this.last = null;
      });
    }
  }

  /** Size the canvas to an image (clears it). */
  reset(width, height) {
    this.canvas.width = width;
    this.canvas.height = height;
    this.undos = [];
    this.painted = false;
  }

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return {
      x: ((e.clientX - r.left) * this.canvas.width) / r.width,
      y: ((e.clientY - r.top) * this.canvas.height) / r.height,
      scale: this.canvas.width / r.width,
    };
  }

  snapshot() {
    const { width, height } = this.canvas;
    if (!width || !height) return;
    this.undos.push(this.ctx.getImageData(0, 0, width, height));
    if (this.undos.length > UNDO_DEPTH) this.undos.shift();
  }

  down(e) {
    if (e.button !== 0) return;
    e.preventDefault();
    this.canvas.setPointerCapture?.(e.pointerId);
    this.snapshot();
    this.last = this.point(e);
    this.stroke(this.last, this.last);
  }

  move(e) {
    if (!this.last) return;
    const p = this.point(e);
    this.stroke(this.last, p);
    this.last = p;
  }

  stroke(a, b) {
    const ctx = this.ctx;
    ctx.save();
    ctx.globalCompositeOperation = this.eraser.checked ? "destination-out" : "source-over";
    ctx.strokeStyle = INK;
    ctx.lineWidth = Number(this.brush.value) * a.scale;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x + 0.01, b.y);
    ctx.stroke();
    ctx.restore();
    this.painted = true;
  }

  undo() {
    const data = this.undos.pop();
    if (data) this.ctx.putImageData(data, 0, 0);
  }

  clear() {
    this.snapshot();
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** Painted ↔ unpainted. */
  invert() {
    this.snapshot();
    this.map((alpha) => alpha < 128);
    this.painted = true;
  }

  /** Replace the painting with `paintedAt(alpha) → bool` applied to each pixel. */
  map(paintedAt) {
    const { width, height } = this.canvas;
    const img = this.ctx.getImageData(0, 0, width, height);
    const d = img.data;
    for (let i = 0; i < d.length; i += 4) {
      const on = paintedAt(d[i + 3], d[i], d[i + 1], d[i + 2]);
      d[i] = 255;
      d[i + 1] = 48;
      d[i + 2] = 96;
      d[i + 3] = on ? 255 : 0;
    }
    this.ctx.putImageData(img, 0, 0);
  }

  /** Load an uploaded mask image (white = repaint) into the painting. */
  async load(blob) {
    const bitmap = await createImageBitmap(blob);
    const { width, height } = this.canvas;
    this.snapshot();
    this.ctx.clearRect(0, 0, width, height);
    this.ctx.drawImage(bitmap, 0, 0, width, height);
    this.map((alpha, r, g, b) => alpha > 127 && (r + g + b) / 3 > 127);
    this.painted = true;
  }

  /** True when some pixel is painted. */
  hasPaint() {
    const { width, height } = this.canvas;
    if (!width || !height) return false;
    const d = this.ctx.getImageData(0, 0, width, height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 127) return true;
    return false;
  }

  /** The mask as a PNG data URL: white where painted, black elsewhere. */
  toDataURL() {
    const { width, height } = this.canvas;
    const out = document.createElement("canvas");
    out.width = width;
    out.height = height;
    const octx = out.getContext("2d");
    const src = this.ctx.getImageData(0, 0, width, height);
    const img = octx.createImageData(width, height);
    for (let i = 0; i < src.data.length; i += 4) {
      const v = src.data[i + 3] > 127 ? 255 : 0;
      img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
      img.data[i + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    return out.toDataURL("image/png");
  }
}
