// The API client: JSON requests, job event streams and authorised media URLs.
// Credentials (a bearer key or user:password) live in localStorage under AUTH_KEY.

const AUTH_KEY = "sdcpp.auth";

export class ApiError extends Error {
  constructor(status, message, fields = {}) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

export function config() {
  const meta = document.querySelector('meta[name="sdcpp-config"]');
  try {
    return JSON.parse(meta?.content || "{}");
  } catch {
    return {};
  }
}

export const auth = {
  get: () => localStorage.getItem(AUTH_KEY) || "",
  set(value) {
    if (value) localStorage.setItem(AUTH_KEY, value);
    else localStorage.removeItem(AUTH_KEY);
  },
  bearer: (key) => `Bearer ${key}`,
  basic: (user, password) => `Basic ${btoa(unescape(encodeURIComponent(`${user}:${password}`)))}`,
};

let askCredentials = null;
/** `fn()` resolves once the user gave credentials (it stores them with `auth.set`). */
export function onUnauthorized(fn) {
  askCredentials = fn;
}

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const a = auth.get();
  if (a) h.Authorization = a;
  return h;
}

function errorOf(status, data) {
  const err = data?.error ?? data;
  if (err && typeof err === "object") {
    const fields = err.fields || (err.param ? { [err.param]: err.message } : {});
    return new ApiError(status, err.message || err.detail || `HTTP ${status}`, fields);
  }
  return new ApiError(status, typeof err === "string" ? err : `HTTP ${status}`);
}

async function send(method, path, body, retry = true) {
  const init = { method, headers: headers(body !== undefined) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  if (res.status === 401 && retry && askCredentials) {
    await askCredentials();
    return send(method, path, body, false);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) throw errorOf(res.status, data);
  return data;
}

export const get = (path) => send("GET", path);
export const post = (path, body = {}) => send("POST", path, body);
export const del = (path) => send("DELETE", path);

/** GET `path`, or null when the server answers 404 (a route this server lacks). */
export async function getOptional(path) {
  try {
    return await get(path);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/** A URL an <img>/<video> can load: the path itself, or a blob URL when credentials are needed. */
export async function mediaUrl(path) {
  if (!auth.get()) return path;
  const res = await fetch(path, { headers: headers(false) });
  if (!res.ok) throw new ApiError(res.status, `could not load ${path}`);
  return URL.createObjectURL(await res.blob());
}

/**
 * Follow a job's server-sent events: `onEvent(kind, data)` for each until the stream ends.
 * Uses fetch (not EventSource) so the Authorization header goes along. Resolves when done;
 * `signal` aborts quietly.
 */
export async function watch(url, onEvent, signal) {
  let res;
  try {
    res = await fetch(url, { headers: headers(false), signal });
  } catch (err) {
    if (err.name === "AbortError") return;
    throw err;
  }
  if (!res.ok) throw errorOf(res.status, await res.json().catch(() => null));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let kind = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) kind = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (data) onEvent(kind, JSON.parse(data));
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  }
}

/** A File/Blob as a data URL (what the API takes for images). */
export function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}
