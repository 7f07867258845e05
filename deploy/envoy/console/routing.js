// Endpoints: the routing table, and an endpoint's page: weights with a preview of which
// share of users would move to which variant (bucketing.js computes it the way Envoy
// routes), shadows and fallback, saved with the endpoint's etag.

import { id, registry, router } from "./api.js";
import * as bucketing from "./bucketing.js";
import { legend, stackedBar } from "./charts.js";
import {
  badge, button, clear, el, errorBox, fill, labelled, link, notice, pct, section, table, timeEl,
} from "./ui.js";

function selectorText(selector) {
  if (!selector) return "latest";
  if (selector.alias) return `alias ${selector.alias}`;
  if (selector.version && selector.version !== "0") return `version ${selector.version}`;
  return "latest";
}

function stickyText(key) {
  if (!key || !key.name) return "unkeyed (random per request)";
  return `${key.source === "PARAMETER" ? "parameter" : "header"} ${key.name}`;
}

// ------------------------------------------------------------------------------- list

export async function list(main, _params, _query, signal) {
  document.title = "Endpoints — ModelHub";
  const box = el("div");
  main.append(
    el("h1", {}, "Endpoints"),
    el("p", { class: "lead" }, "Routing policies: how requests for an endpoint split between variants, which shadows see a copy, and who answers when a variant fails."),
    box,
  );
  await fill(box, async () => {
    const [endpoints, tableOrError] = await Promise.all([
      registry.listEndpoints({ page_size: 200 }, signal),
      router.table(signal).catch((error) => error),
    ]);
    const routes = new Map();
    const routerDown = tableOrError instanceof Error;
    if (!routerDown) for (const e of tableOrError.endpoints || []) routes.set(e.name, e);
    return [
      routerDown ? errorBox(tableOrError) : null,
      table(
        [
          { title: "Endpoint", render: (e) => link(`#/endpoints/${encodeURIComponent(id(e.name))}`, id(e.name)) },
          { title: "Sticky key", class: "hide-narrow", render: (e) => stickyText(e.sticky_key) },
          {
            title: "Variants",
            render: (e) => {
              const route = routes.get(e.name);
              const weights = (e.variants || []).map((v) => Number(v.weight));
              let widths = [];
              try {
                widths = bucketing.scaled(weights);
              } catch {
                widths = weights.map(() => 0);
              }
              return (e.variants || []).map((v, i) => {
                const resolved = route?.variants?.find((r) => r.name === v.name);
                const version = resolved && resolved.version !== "0" ? ` v${resolved.version}` : "";
                return el("div", {}, el("strong", {}, v.name), ` ${pct(widths[i] / bucketing.TOTAL)} — ${id(v.model)}${version} (${selectorText(v.selector)})`);
              });
            },
          },
          { title: "Shadows", class: "hide-narrow", render: (e) => (e.shadows || []).map((s) => el("div", {}, `${s.name} ${pct(s.sample_rate, 0)} → ${id(s.model)} (${selectorText(s.selector)})`)) },
          { title: "Fallback", class: "hide-narrow", render: (e) => e.fallback || "—" },
          { title: "", render: (e) => link(`#/live/${encodeURIComponent(id(e.name))}`, "Live") },
        ],
        endpoints.endpoints || [],
        { id: "endpoints-table", empty: "No endpoint yet (modelhub endpoints apply NAME endpoint.json)." },
      ),
    ];
  });
}

// ------------------------------------------------------------------------ an endpoint

function routeTable(route) {
  const variants = route?.variants || [];
  const total = Number(variants[0]?.buckets || bucketing.TOTAL);
  const parts = variants.map((v) => ({ name: v.name, width: Number(v.bucket_upper) - Number(v.bucket_lower) }));
  const body = el("tbody");
  for (const v of variants) {
    const lower = Number(v.bucket_lower);
    const upper = Number(v.bucket_upper);
    body.append(
      el(
        "tr",
        { dataset: { variant: v.name, lower, upper } },
        el("td", {}, el("strong", {}, v.name)),
        el("td", { class: "num" }, pct((upper - lower) / total, 2)),
        el("td", { class: "num" }, `[${lower}, ${upper})`),
        el("td", {}, `${id(v.model)} ${v.version !== "0" ? `v${v.version}` : "(no READY version)"}`),
        el("td", { class: "hide-narrow" }, v.selector),
        el("td", { class: "hide-narrow" }, v.deployed ? badge("deployed", "ok") : badge("on demand", "warn")),
        el("td", { class: "hide-narrow" }, (v.backends || []).map((b) => el("div", {}, el("code", {}, b.address))), (v.backends || []).length ? null : "default pool"),
      ),
    );
  }
  const head = el("tr", {}, ["Variant", "Share", "Buckets", "Serves", "Selector", "Loaded", "Backends"].map((t, i) =>
    el("th", { scope: "col", class: i > 3 ? "hide-narrow" : i === 1 || i === 2 ? "num" : undefined }, t)));
  return [
    stackedBar(parts, total, { title: "Bucket ranges" }),
    legend(parts.map((p) => p.name)),
    el("div", { class: "table-wrap" }, el("table", { id: "routing-table" }, el("thead", {}, head), body)),
    route?.shadows?.length
      ? el("p", {}, "Shadows: ", route.shadows.map((s) => badge(`${s.name} ${pct(s.sample_rate, 0)} → ${id(s.model)} v${s.version}`)))
      : null,
  ];
}

export async function detail(main, [name], _query, signal) {
  document.title = `${name} — endpoint — ModelHub`;
  const head = el("div");
  const routeBox = el("div", { id: "route-box" });
  const editorBox = el("div");
  main.append(
    el("p", { class: "muted" }, link("#/endpoints", "Endpoints"), " / ", name),
    head,
    section("Routing now (the router's table)", routeBox),
    editorBox,
  );
  const loadRoute = () =>
    fill(routeBox, async () => {
      const t = await router.table(signal);
      const route = (t.endpoints || []).find((e) => e.name === `endpoints/${name}`);
      if (!route) return notice("The router does not route this endpoint (yet): it appears once the router has the registry's change.");
      return [el("p", { class: "muted" }, `Registry revision ${t.revision}. Sticky key: ${route.sticky_key || "none (random per request)"}. Fallback: ${route.fallback || "none"}.`), routeTable(route)];
    });
  let endpoint = null;
  await fill(head, async () => {
    const e = await registry.getEndpoint(name, signal);
    endpoint = e;
    return [
      el("h1", {}, id(e.name)),
      e.description ? el("p", { class: "lead" }, e.description) : null,
      el(
        "dl",
        { class: "kv" },
        el("dt", {}, "Sticky key"), el("dd", {}, stickyText(e.sticky_key)),
        el("dt", {}, "Salt"), el("dd", {}, el("code", {}, e.salt)),
        el("dt", {}, "Updated"), el("dd", {}, timeEl(e.update_time)),
        el("dt", {}, "Live"), el("dd", {}, link(`#/live/${encodeURIComponent(name)}`, "requests, errors, latency, experiment and shadows")),
      ),
    ];
  });
  await loadRoute();
  if (endpoint) {
    editorBox.append(...editor(endpoint, { name, signal, loadRoute }));
  }
}

function cleanSelector(selector) {
  if (selector?.alias) return { alias: selector.alias };
  if (selector?.version && selector.version !== "0") return { version: selector.version };
  return {};
}

function editor(endpoint, { name, signal, loadRoute }) {
  const variants = endpoint.variants || [];
  const shadows = endpoint.shadows || [];
  const saved = variants.map((v) => Number(v.weight));
  const weightInputs = variants.map((v, i) =>
    el("input", { type: "number", min: 0, step: "any", value: String(saved[i]), id: `weight-${i}`, dataset: { variant: v.name }, inputmode: "decimal" }));
  const rateInputs = shadows.map((s, i) =>
    el("input", { type: "number", min: 0, max: 1, step: "any", value: String(Number(s.sample_rate)), id: `shadow-rate-${i}`, dataset: { shadow: s.name } }));
  const fallback = el(
    "select",
    { id: "fallback" },
    el("option", { value: "" }, "none"),
    variants.map((v) => el("option", { value: v.name, selected: v.name === endpoint.fallback }, v.name)),
  );
  const preview = el("div", { id: "preview", "aria-live": "polite" });
  const keyInput = el("input", { type: "text", id: "explain-key", placeholder: "user 42", autocomplete: "off" });
  const keyResult = el("div", { id: "explain-result", "aria-live": "polite" });
  const status = el("div", { id: "save-status", "aria-live": "polite" });
  const save = el("button", { type: "submit", id: "save-endpoint" }, "Save with etag");

  const proposed = () => weightInputs.map((input) => Number(input.value));

  const renderPreview = () => {
    clear(preview);
    let move;
    try {
      move = bucketing.movement(saved, proposed());
    } catch (error) {
      preview.append(notice(`Weights must be non-negative numbers with a positive sum (${error.message}).`, "error"));
      save.disabled = true;
      return;
    }
    save.disabled = false;
    const rows = [];
    move.matrix.forEach((row, i) => row.forEach((buckets, j) => {
      if (i !== j && buckets > 0) rows.push({ from: variants[i].name, to: variants[j].name, buckets });
    }));
    const after = move.after.map((r, i) => ({ name: variants[i].name, ...r }));
    preview.append(
      el("p", { id: "preview-summary" }, rows.length
        ? `${pct(move.moved / bucketing.TOTAL, 2)} of users would change variant; everyone else keeps theirs.`
        : "No user would change variant."),
      table(
        [
          { title: "From", render: (r) => r.from },
          { title: "To", render: (r) => r.to },
          { title: "Share of users", class: "num", render: (r) => pct(r.buckets / bucketing.TOTAL, 2) },
          { title: "Buckets", class: "num", render: (r) => String(r.buckets) },
        ],
        rows,
        { id: "preview-moves", empty: "Nobody moves." },
      ),
      el("h3", {}, "Bucket ranges after the change"),
      stackedBar(after.map((a) => ({ name: a.name, width: a.upper - a.lower })), bucketing.TOTAL, { title: "Ranges after the change" }),
      el("div", { class: "table-wrap" }, el("table", { id: "preview-ranges" },
        el("thead", {}, el("tr", {}, el("th", {}, "Variant"), el("th", { class: "num" }, "Share"), el("th", { class: "num" }, "Buckets"))),
        el("tbody", {}, after.map((a) => el("tr", { dataset: { variant: a.name, lower: a.lower, upper: a.upper } },
          el("td", {}, a.name), el("td", { class: "num" }, pct((a.upper - a.lower) / bucketing.TOTAL, 2)), el("td", { class: "num" }, `[${a.lower}, ${a.upper})`)))))),
    );
    renderKey();
  };

  const renderKey = () => {
    clear(keyResult);
    const key = keyInput.value;
    if (!key) return;
    if (!endpoint.sticky_key?.name) {
      keyResult.append(notice("This endpoint is unkeyed: every request picks a variant at random."));
      return;
    }
    const b = bucketing.bucket(endpoint.salt, key);
    let now;
    let next;
    try {
      now = variants[bucketing.pick(bucketing.ranges(saved), b)]?.name;
      next = variants[bucketing.pick(bucketing.ranges(proposed()), b)]?.name;
    } catch {
      return;
    }
    keyResult.append(el("p", { dataset: { bucket: b, now, next }, id: "explain-local" },
      `Key “${key}” is in bucket ${b} of ${bucketing.TOTAL}: `, el("strong", {}, now),
      now === next ? " now and after the change." : [" now, ", el("strong", {}, next), " after the change."]));
  };

  const ask = button("Ask the router", async () => {
    const key = keyInput.value;
    const out = el("div", { id: "explain-router" });
    keyResult.querySelector("#explain-router")?.remove();
    keyResult.append(out);
    await fill(out, async () => {
      const answer = await router.explain(name, key, signal);
      out.dataset.variant = answer.variant?.name || "";
      out.dataset.bucket = answer.bucket_index;
      return el("p", {}, el("span", { class: "muted" }, "ExplainRoute: "), answer.explanation);
    });
  }, { class: "secondary", id: "explain-ask" });

  for (const input of weightInputs) input.addEventListener("input", renderPreview);
  keyInput.addEventListener("input", renderKey);

  const form = el(
    "form",
    { class: "stack", "aria-label": "Edit the routing policy" },
    el("h3", {}, "Weights"),
    el("div", { class: "row" }, variants.map((v, i) =>
      labelled(`${v.name} (${id(v.model)}, ${selectorText(v.selector)})`, weightInputs[i]))),
    shadows.length ? el("h3", {}, "Shadows (share of keys mirrored, 0–1)") : null,
    shadows.length ? el("div", { class: "row" }, shadows.map((s, i) => labelled(`${s.name} → ${id(s.model)} (${selectorText(s.selector)})`, rateInputs[i]))) : null,
    el("h3", {}, "Fallback"),
    labelled("Answers when the chosen variant is unavailable", fallback),
    el("div", { class: "row" }, save, button("Reset", () => {
      weightInputs.forEach((input, i) => { input.value = String(saved[i]); });
      renderPreview();
    }, { class: "secondary" })),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const weights = proposed();
    const body = {
      etag: endpoint.etag,
      variants: variants.map((v, i) => ({ name: v.name, model: v.model, selector: cleanSelector(v.selector), weight: weights[i], pool: v.pool || [] })),
      shadows: shadows.map((s, i) => ({ name: s.name, model: s.model, selector: cleanSelector(s.selector), sample_rate: Number(rateInputs[i].value), pool: s.pool || [] })),
      fallback: fallback.value,
    };
    save.disabled = true;
    clear(status).append(notice("Saving…"));
    try {
      const updated = await registry.updateEndpoint(name, body, "variants,shadows,fallback");
      const expected = bucketing.ranges(weights);
      clear(status).append(el("div", { class: "alert success", role: "status", id: "saved" },
        `Saved (etag ${updated.etag}). Waiting for the router to route by it…`));
      await waitForRoute(name, variants.map((v) => v.name), expected, signal);
      const fresh = await registry.getEndpoint(name, signal);
      Object.assign(endpoint, fresh);
      saved.splice(0, saved.length, ...weights);
      renderPreview();
      await loadRoute();
      // Said once the table below shows the new ranges (not before it is redrawn).
      clear(status).append(el("div", { class: "alert success", role: "status", id: "saved", dataset: { routed: "true" } },
        "Saved: the router's table shows the new ranges, which is what Envoy routes by."));
    } catch (error) {
      if (error?.name === "AbortError") return;
      clear(status).append(errorBox(error));
      if (error.code === "ABORTED") {
        status.append(button("Reload the endpoint", () => window.dispatchEvent(new HashChangeEvent("hashchange")), { class: "secondary", id: "reload-endpoint" }));
      }
    } finally {
      save.disabled = false;
    }
  });

  renderPreview();
  return [
    section("Change the policy", form),
    section("Preview", preview),
    section("Which variant does a key get?", el("div", { class: "row" }, labelled("Sticky key value", keyInput), ask), keyResult),
  ];
}

// Until the router's table has `expected` ranges for the endpoint (or 30 s).
async function waitForRoute(name, names, expected, signal) {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline && !signal.aborted) {
    const t = await router.table(signal);
    const route = (t.endpoints || []).find((e) => e.name === `endpoints/${name}`);
    const ok = route && names.every((n, i) => {
      const v = route.variants.find((r) => r.name === n);
      return v && Number(v.bucket_lower) === expected[i].lower && Number(v.bucket_upper) === expected[i].upper;
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error("the router did not show the new ranges within 30 s (is it following the registry?)");
}
