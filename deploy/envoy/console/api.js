// ModelHub's HTTP/JSON API through Envoy's gRPC-JSON transcoder, same origin. Every call
// here is in /openapi.json (tests/e2e/test_console.py checks each request the browser made
// against it). JSON uses proto field names; 64-bit integers arrive as strings.

const TOKEN_KEY = "modelhub.console.token";

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(value) {
  try {
    if (value) {
      sessionStorage.setItem(TOKEN_KEY, value);
    } else {
      sessionStorage.removeItem(TOKEN_KEY);
    }
  } catch {
    // Storage disabled: the token lasts for this page only.
  }
  window.dispatchEvent(new CustomEvent("modelhub:token"));
}

// gRPC status names by code (the transcoder answers google.rpc.Status with a numeric code).
const CODES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED",
];

const HTTP_CODES = {
  400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
  404: "NOT_FOUND", 409: "ABORTED", 413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED",
  499: "CANCELLED", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED",
};

// Which service answers a path: for "the registry is unavailable".
export function serviceOf(path) {
  if (path.startsWith("/v1/monitor") || path.startsWith("/v1/audit")) return "monitor";
  if (path.startsWith("/v1/router")) return "router";
  return "registry";
}

export class ApiError extends Error {
  constructor(status, code, message, reason, path) {
    super(message);
    this.status = status;
    this.code = code;
    this.reason = reason;
    this.path = path;
    this.service = serviceOf(path);
  }
}

async function errorFrom(response, path) {
  let code = HTTP_CODES[response.status] || (response.status >= 500 ? "INTERNAL" : "UNKNOWN");
  let message = "";
  let reason = "";
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (typeof body.code === "number" && CODES[body.code]) {
      code = CODES[body.code];
    }
    message = body.message || "";
    for (const detail of body.details || []) {
      if (detail && detail.reason) {
        reason = detail.reason;
      }
    }
  } catch {
    // Envoy's own answers (no upstream, timeouts) are plain text.
    message = text.trim();
  }
  if (!message) {
    message = `${response.status} ${response.statusText}`.trim();
  }
  return new ApiError(response.status, code, message, reason, path);
}

function headers(extra = {}) {
  const out = { ...extra };
  const t = token();
  if (t) {
    out.authorization = `Bearer ${t}`;
  }
  return out;
}

function query(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

const seg = encodeURIComponent;

export async function call(method, path, { params, body, signal } = {}) {
  const init = { method, headers: headers(), signal, cache: "no-store" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path + query(params), init);
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(0, "UNAVAILABLE", "the front door did not answer (network error)", "", path);
  }
  if (!response.ok) {
    throw await errorFrom(response, path);
  }
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

// The id part of a resource name: "models/fraud" → "fraud".
export function id(name) {
  return String(name || "").split("/").pop();
}

// ---------------------------------------------------------------------------- registry

export const registry = {
  listModels: (p, signal) => call("GET", "/v1/models", { params: p, signal }),
  getModel: (m, signal) => call("GET", `/v1/models/${seg(m)}`, { signal }),
  listVersions: (m, p, signal) =>
    call("GET", `/v1/models/${seg(m)}/versions`, { params: p, signal }),
  getVersion: (m, v, signal) =>
    call("GET", `/v1/models/${seg(m)}/versions/${seg(v)}`, { params: { view: "BASIC" }, signal }),
  archiveVersion: (m, v, etag) =>
    call("POST", `/v1/models/${seg(m)}/versions/${seg(v)}:archive`, { body: { etag } }),
  listAliases: (m, signal) => call("GET", `/v1/models/${seg(m)}/aliases`, { signal }),
  setAlias: (m, alias, version) =>
    call("POST", `/v1/models/${seg(m)}/aliases`, { body: { alias, version: String(version) } }),
  deleteAlias: (m, alias) => call("DELETE", `/v1/models/${seg(m)}/aliases/${seg(alias)}`),
  listEndpoints: (p, signal) => call("GET", "/v1/endpoints", { params: p, signal }),
  getEndpoint: (e, signal) => call("GET", `/v1/endpoints/${seg(e)}`, { signal }),
  updateEndpoint: (e, endpoint, mask) =>
    call("PATCH", `/v1/endpoints/${seg(e)}`, { params: { update_mask: mask }, body: endpoint }),
  listDeployments: (p, signal) => call("GET", "/v1/deployments", { params: p, signal }),
  startUpload: (metadata) => call("POST", "/v1/uploads", { body: { metadata } }),
  getUpload: (u) => call("GET", `/v1/uploads/${seg(u)}`),
  commitUpload: (u) => call("POST", `/v1/uploads/${seg(u)}:commit`, { body: {} }),
  cancelUpload: (u) => call("DELETE", `/v1/uploads/${seg(u)}`),
};

// AppendUpload: the chunk is the raw request body (google.api.HttpBody), `offset` in the
// query. XMLHttpRequest, not fetch: it reports upload progress.
export function appendUpload(upload, offset, chunk, onProgress, signal) {
  const path = `/v1/uploads/${seg(upload)}:append`;
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path + query({ offset: String(offset) }));
    for (const [key, value] of Object.entries(headers())) {
      xhr.setRequestHeader(key, value);
    }
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = async () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(JSON.parse(xhr.responseText || "{}"));
        return;
      }
      const response = new Response(xhr.responseText, { status: xhr.status });
      reject(await errorFrom(response, path));
    };
    xhr.onerror = () =>
      reject(new ApiError(0, "UNAVAILABLE", "the upload connection failed", "", path));
    xhr.onabort = () => reject(new DOMException("aborted", "AbortError"));
    if (signal) {
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.send(chunk);
  });
}

// ------------------------------------------------------------------------------ router

export const router = {
  table: (signal) => call("GET", "/v1/router/table", { signal }),
  explain: (e, key, signal) =>
    call("GET", `/v1/router/endpoints/${seg(e)}:explain`, { params: { key }, signal }),
  replicas: (signal) => call("GET", "/v1/router/replicas", { signal }),
};

// ----------------------------------------------------------------------------- monitor

export const monitor = {
  timeseries: (p, signal) => call("GET", "/v1/monitor/timeseries", { params: p, signal }),
  stats: (p, signal) => call("GET", "/v1/monitor/stats", { params: p, signal }),
  experiment: (e, p, signal) =>
    call("GET", `/v1/monitor/endpoints/${seg(e)}:experiment`, { params: p, signal }),
  shadows: (e, p, signal) =>
    call("GET", `/v1/monitor/endpoints/${seg(e)}:shadows`, { params: p, signal }),
  drift: (p, signal) => call("GET", "/v1/monitor/drift", { params: p, signal }),
  rules: (p, signal) => call("GET", "/v1/monitor/rules", { params: p, signal }),
  alerts: (signal) => call("GET", "/v1/monitor/alerts", { signal }),
};
