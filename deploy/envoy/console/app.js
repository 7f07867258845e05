// The console's shell: hash routing, the token, navigation state. Pages live in
// models.js, routing.js and observe.js; each is `render(main, params, signal)` and stops its
// polling and requests when `signal` aborts (the next navigation).

import { setToken, token } from "./api.js";
import { button, el, errorBox, labelled } from "./ui.js";
import * as models from "./models.js";
import * as routing from "./routing.js";
import * as observe from "./observe.js";

// [pattern, section (nav highlight), page]
const ROUTES = [
  [/^\/models$/, "models", models.list],
  [/^\/models\/([^/]+)$/, "models", models.detail],
  [/^\/endpoints$/, "endpoints", routing.list],
  [/^\/endpoints\/([^/]+)$/, "endpoints", routing.detail],
  [/^\/live\/([^/]+)$/, "endpoints", observe.live],
  [/^\/drift\/([^/]+)\/([^/]+)$/, "models", observe.drift],
  [/^\/alerts$/, "alerts", observe.alerts],
  [/^\/deployments$/, "deployments", observe.deployments],
];

let current = null;

// "#/models/fraud?tag=x" → {path: "/models/fraud", query: URLSearchParams}
export function parseHash(hash = window.location.hash) {
  const raw = hash.replace(/^#/, "") || "/models";
  const [path, search = ""] = raw.split("?");
  return { path, query: new URLSearchParams(search) };
}

function highlight(sectionName) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === sectionName) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function navigate() {
  const { path, query } = parseHash();
  if (!path.startsWith("/")) return; // an in-page anchor
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const main = document.getElementById("main");
  main.replaceChildren();
  const match = ROUTES.map(([re, name, page]) => [path.match(re), name, page]).find(([m]) => m);
  if (!match) {
    highlight("");
    document.title = "Not found — ModelHub";
    main.append(
      el("h1", { tabindex: "-1" }, "Not found"),
      el("p", {}, "No console page at ", el("code", {}, path), ". ", el("a", { href: "#/models" }, "Go to the models")),
    );
    return;
  }
  const [m, name, page] = match;
  highlight(name);
  const params = m.slice(1).map(decodeURIComponent);
  try {
    await page(main, params, query, controller.signal);
  } catch (error) {
    if (error?.name !== "AbortError" && current === controller) {
      main.append(errorBox(error));
    }
  }
  if (current === controller) {
    const heading = main.querySelector("h1");
    if (heading && document.activeElement?.closest?.("nav")) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }
}

// ------------------------------------------------------------------------------ token

function renderAuth() {
  const box = document.getElementById("auth");
  const has = Boolean(token());
  box.replaceChildren(
    el("span", { class: has ? "who signed" : "who", id: "auth-state" }, has ? "Token set" : "Anonymous"),
    button(has ? "Change token" : "Token", openTokenDialog, { id: "token-button", class: "secondary" }),
  );
}

function openTokenDialog() {
  const input = el("input", {
    type: "password",
    id: "token-input",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "paste a bearer token",
  });
  const form = el(
    "form",
    { method: "dialog", class: "stack" },
    el("h2", { id: "token-title" }, "API token"),
    el(
      "p",
      { class: "muted" },
      "Kept in this tab only (sessionStorage) and sent as Authorization: Bearer to the API. Without a token the console does what the server's anonymous role allows.",
    ),
    labelled("Token", input),
    // "Use token" first: Enter in the field submits with the form's first button.
    el(
      "div",
      { class: "actions reverse" },
      el("button", { type: "submit", value: "save", class: "primary", id: "token-save" }, "Use token"),
      el("button", { type: "submit", value: "cancel", class: "secondary" }, "Cancel"),
      el("button", { type: "submit", value: "forget", class: "secondary", id: "token-forget" }, "Forget token"),
    ),
  );
  const dialog = el("dialog", { class: "dialog", "aria-labelledby": "token-title" }, form);
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save" && input.value.trim()) setToken(input.value.trim());
    else if (dialog.returnValue === "forget") setToken("");
    dialog.remove();
    document.getElementById("token-button")?.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  input.focus();
}

// ------------------------------------------------------------------------------- start

function start() {
  renderAuth();
  window.addEventListener("modelhub:token", () => {
    renderAuth();
    navigate();
  });
  window.addEventListener("hashchange", navigate);
  document.getElementById("skip").addEventListener("click", (event) => {
    event.preventDefault();
    const main = document.getElementById("main");
    main.focus();
  });
  window.addEventListener("unhandledrejection", (event) => {
    // Every page handles its errors; one that slips through is shown (and still logged:
    // the browser tests fail on it). A request cut short by navigation is no error.
    if (event.reason?.name === "AbortError") {
      event.preventDefault();
      return;
    }
    document.getElementById("main").prepend(errorBox(event.reason));
  });
  if (!window.location.hash || window.location.hash === "#") {
    window.history.replaceState(null, "", "#/models");
  }
  navigate();
}

start();
