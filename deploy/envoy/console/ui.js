// DOM helpers shared by the pages: elements, tables, formatting, errors, dialogs.
// Everything is built with the DOM API (no innerHTML with data): names, descriptions and
// labels come from users.

import { ApiError } from "./api.js";

// el("a", {href: "#/x", class: "btn", onclick: f, dataset: {k: "v"}}, "text", child, ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "value") node.value = value;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

// A section with a heading; body is filled by the caller.
export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return el("section", { class: "card", "aria-labelledby": id }, el("h2", { id }, title), children);
}

// columns: [{title, render(row) → node|string, class?}]
export function table(columns, rows, { caption, empty = "Nothing here yet.", id } = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.class }, c.title)));
  const body = el("tbody");
  for (const row of rows) {
    body.append(el("tr", {}, columns.map((c) => el("td", { class: c.class }, c.render(row)))));
  }
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, empty)));
  }
  return el(
    "div",
    { class: "table-wrap" },
    el("table", { id }, caption ? el("caption", {}, caption) : null, el("thead", {}, head), body),
  );
}

export function link(href, text, attrs = {}) {
  return el("a", { href, ...attrs }, text);
}

export function button(text, onclick, attrs = {}) {
  return el("button", { type: "button", onclick, ...attrs }, text);
}

export function badge(text, kind = "") {
  return el("span", { class: `badge ${kind}`.trim() }, text);
}

// ------------------------------------------------------------------------- formatting

export function bytes(n) {
  const value = Number(n || 0);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = value;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${value} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

export function when(stamp) {
  if (!stamp) return "";
  const date = new Date(stamp);
  if (Number.isNaN(date.getTime())) return String(stamp);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function ago(stamp) {
  if (!stamp) return "";
  const seconds = Math.round((Date.now() - new Date(stamp).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return `${Math.max(0, seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function timeEl(stamp) {
  return stamp ? el("time", { datetime: stamp, title: when(stamp) }, ago(stamp)) : "";
}

export function pct(x, digits = 1) {
  return `${(Number(x || 0) * 100).toFixed(digits)} %`;
}

export function num(x, digits = 3) {
  const v = Number(x);
  if (!Number.isFinite(v)) return String(x ?? "");
  return Math.abs(v) >= 1000 ? v.toFixed(0) : String(Number(v.toPrecision(digits)));
}

export function ms(seconds) {
  return `${num(Number(seconds || 0) * 1000)} ms`;
}

export function short(sha, n = 12) {
  return sha ? el("code", { title: sha }, sha.slice(0, n)) : "";
}

// --------------------------------------------------------------------------- errors

const SERVICE_NAMES = { registry: "registry", monitor: "monitor", router: "router" };

// A sentence a person can act on, for any error.
export function describe(error) {
  if (!(error instanceof ApiError)) {
    return { title: "Something went wrong in the console", detail: String(error?.message || error) };
  }
  const service = SERVICE_NAMES[error.service] || "service";
  switch (error.code) {
    case "UNAUTHENTICATED":
      return {
        title: `401 — this needs a token (${error.code})`,
        detail: `${error.message}. Paste a token with the Token button at the top: the server does not let anonymous callers do this.`,
        kind: "auth",
      };
    case "PERMISSION_DENIED":
      return {
        title: `403 — your token's role may not do this (${error.code})`,
        detail: `${error.message}. Ask for a token with a larger role (reader < publisher < admin).`,
        kind: "auth",
      };
    case "UNAVAILABLE":
      return {
        title: `The ${service} is unavailable`,
        detail: `${error.message}. The rest of the console keeps working; this part shows again once the ${service} answers.`,
        kind: "down",
      };
    case "UNIMPLEMENTED":
      return {
        title: `The ${service} does not offer this yet (UNIMPLEMENTED)`,
        detail: error.message,
        kind: "down",
      };
    case "ABORTED":
      return {
        title: "Someone else changed this first",
        detail: `${error.message}. Reload to see their change, then make yours again.`,
        kind: "conflict",
      };
    default:
      return { title: `${error.code} (HTTP ${error.status})`, detail: error.message };
  }
}

export function errorBox(error, { retry } = {}) {
  const { title, detail, kind } = describe(error);
  return el(
    "div",
    { class: `alert error ${kind || ""}`.trim(), role: "alert", dataset: { code: error.code || "" } },
    el("strong", {}, title),
    el("p", {}, detail),
    retry ? button("Try again", retry) : null,
  );
}

export function notice(text, kind = "info") {
  return el("div", { class: `alert ${kind}`, role: "status" }, text);
}

// Runs `load` and puts what it returns (or its error) into `target`; returns the result.
// `retry`: what "Try again" does (default: this load again).
export async function fill(target, load, { loading = "Loading…", retry } = {}) {
  clear(target).append(el("p", { class: "muted", "aria-busy": "true" }, loading));
  try {
    const content = await load();
    clear(target).append(...[content].flat(Infinity).filter(Boolean));
    return content;
  } catch (error) {
    if (error?.name === "AbortError") return null;
    clear(target).append(errorBox(error, { retry: retry || (() => fill(target, load, { loading })) }));
    return null;
  }
}

// ------------------------------------------------------------------------- dialogs

// A modal <dialog> (focus is trapped and Escape closes it). Resolves true on confirm.
export function confirmDialog(title, body, confirmText = "Confirm") {
  return new Promise((resolve) => {
    const dialog = el(
      "dialog",
      { class: "dialog", "aria-labelledby": "dialog-title" },
      el("h2", { id: "dialog-title" }, title),
      el("p", {}, body),
      el(
        "div",
        { class: "actions" },
        button("Cancel", () => dialog.close("cancel"), { class: "secondary" }),
        button(confirmText, () => dialog.close("ok"), { class: "primary", dataset: { confirm: "" } }),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function labelled(text, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return el(
    "div",
    { class: "field" },
    el("label", { for: id }, text),
    control,
    hint ? el("small", { class: "muted" }, hint) : null,
  );
}

// Polls `tick` every `ms` while the page stays (the page's AbortSignal ends it).
export function every(ms, signal, tick) {
  let timer = 0;
  const run = async () => {
    if (signal.aborted) return;
    try {
      await tick();
    } catch {
      // Each tick shows its own errors.
    } finally {
      if (!signal.aborted) timer = window.setTimeout(run, ms);
    }
  };
  signal.addEventListener("abort", () => window.clearTimeout(timer), { once: true });
  run();
}
