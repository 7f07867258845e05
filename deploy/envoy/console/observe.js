// Watching what runs: an endpoint's live view (traffic, errors, latency per variant, the
// experiment and the shadows), a version's drift report, alerts, and the inference fleet.

import { id, monitor, registry, router } from "./api.js";
import { colorOf, histogramPair, intervals, legend, lineChart, meter } from "./charts.js";
import {
  badge, bytes, clear, el, errorBox, every, fill, labelled, link, ms, notice, num, pct,
  section, table, timeEl,
} from "./ui.js";

const REFRESH_MS = 5000;

// Polls `load` into `box` every REFRESH_MS; stops for good on UNIMPLEMENTED (the service
// does not offer it) and keeps the last good content while a refresh fails.
function poll(box, signal, load) {
  let stopped = false;
  every(REFRESH_MS, signal, async () => {
    if (stopped) return;
    try {
      const content = await load();
      clear(box).append(...[content].flat(Infinity).filter(Boolean));
    } catch (error) {
      if (error?.name === "AbortError") return;
      if (error?.code === "UNIMPLEMENTED") stopped = true;
      box.querySelector(":scope > .alert.error")?.remove();
      box.querySelector(":scope > .loading")?.remove();
      box.prepend(errorBox(error));
    }
  });
}

function stamp() {
  return el("p", { class: "muted small" }, `Updated ${new Date().toLocaleTimeString()}`);
}

// -------------------------------------------------------------------------- live view

const METRICS = [
  ["requests_per_second", "Requests per second", "/s"],
  ["errors_per_second", "Errors per second", "/s"],
  ["p50_ms", "Latency p50", " ms"],
  ["p99_ms", "Latency p99", " ms"],
];

// Series in the endpoint's variant order (the routing page's colours), others after.
function byOrder(items, order, name) {
  const rank = (x) => {
    const i = order.indexOf(name(x));
    return i < 0 ? order.length : i;
  };
  return [...items].sort((a, b) => rank(a) - rank(b) || String(name(a)).localeCompare(String(name(b))));
}

function charts(unordered, order) {
  const series = byOrder(unordered, order, (s) => s.variant);
  const names = series.map((s) => s.variant || `v${s.version}`);
  const colors = names.map((n) => colorOf(n, order.length ? order : names));
  let requests = 0;
  let withTraffic = 0;
  for (const s of series) {
    for (const p of s.points || []) {
      const n = Number(p.requests || 0);
      requests += n;
      if (n > 0) withTraffic += 1;
    }
  }
  const grid = el("div", { class: "charts", id: "live-charts", dataset: { requests, points: withTraffic } });
  for (const [field, title, unit] of METRICS) {
    const data = series.map((s, i) => ({
      name: names[i],
      color: colors[i],
      points: (s.points || []).map((p) => ({
        t: new Date(p.time).getTime(),
        v: p[field] === undefined || p[field] === null ? null : Number(p[field]),
      })),
    }));
    grid.append(el("div", { class: "card", dataset: { metric: field } }, el("h3", {}, title), lineChart(data, { title, unit }), legend(names, colors)));
  }
  return grid;
}

function experimentView(report, order) {
  const variants = byOrder(report.variants || [], order, (v) => v.variant);
  return [
    table(
      [
        { title: "Variant", render: (v) => el("strong", {}, v.variant) },
        { title: "Serves", render: (v) => `${id(v.model)} v${v.version}` },
        { title: "Requests", class: "num", render: (v) => v.requests },
        { title: "Errors", class: "num", render: (v) => `${v.errors} (${pct(v.error_rate)})` },
        { title: "p50 / p99", class: "num hide-narrow", render: (v) => `${ms(v.latency?.p50)} / ${ms(v.latency?.p99)}` },
        { title: "Outcomes", class: "num", render: (v) => `${v.conversions} of ${v.outcomes}` },
        { title: "Outcome rate (95 % CI)", class: "num", render: (v) => `${pct(v.outcome_rate)} (${pct(v.outcome_rate_ci?.lower)}–${pct(v.outcome_rate_ci?.upper)})` },
      ],
      variants,
      { id: "experiment-table", empty: "No traffic in this window." },
    ),
    variants.length
      ? intervals(variants.map((v) => ({
        name: v.variant,
        color: colorOf(v.variant, order.length ? order : variants.map((x) => x.variant)),
        value: Number(v.outcome_rate),
        lower: Number(v.outcome_rate_ci?.lower),
        upper: Number(v.outcome_rate_ci?.upper),
      })), { title: "Outcome rate with 95 % confidence interval" })
      : null,
    table(
      [
        { title: "Compared", render: (c) => `${c.variant_b} vs ${c.variant_a}` },
        { title: "Difference", class: "num", render: (c) => `${(Number(c.difference) * 100).toFixed(2)} pp` },
        { title: "z", class: "num", render: (c) => num(c.z_score) },
        { title: "p-value", class: "num", render: (c) => num(c.p_value) },
        { title: "", render: (c) => (c.significant ? badge(`significant at α=${report.alpha}`, "ok") : badge("not significant")) },
      ],
      report.comparisons || [],
      { id: "comparisons-table", empty: "Needs two variants with traffic." },
    ),
  ];
}

function shadowView(report) {
  return table(
    [
      { title: "Shadow", render: (s) => el("strong", {}, s.shadow) },
      { title: "Runs", render: (s) => `${id(s.model)} v${s.version}` },
      { title: "Compared", class: "num", render: (s) => s.compared },
      { title: "Failed", class: "num", render: (s) => s.failed },
      { title: "Argmax agrees", class: "num", render: (s) => (Number(s.argmax_compared) > 0 ? pct(s.agreement_rate) : "—") },
      { title: "max |Δ| p50 / p99 / max", class: "num hide-narrow", render: (s) => `${num(s.max_abs_diff_p50)} / ${num(s.max_abs_diff_p99)} / ${num(s.max_abs_diff_max)}` },
      { title: "Latency p50 shadow / primary", class: "num", render: (s) => `${ms(s.shadow_latency?.p50)} / ${ms(s.primary_latency?.p50)}` },
    ],
    report.shadows || [],
    { id: "shadows-table", empty: "No shadow comparison in this window." },
  );
}

export async function live(main, [endpoint], query, signal) {
  document.title = `${endpoint} — live — ModelHub`;
  const windowSeconds = Number(query.get("window") || 3600);
  const select = el("select", { id: "live-window" },
    [[900, "last 15 minutes"], [3600, "last hour"]].map(([s, t]) => el("option", { value: s, selected: s === windowSeconds }, t)));
  select.addEventListener("change", () => { window.location.hash = `#/live/${encodeURIComponent(endpoint)}?window=${select.value}`; });
  const chartsBox = el("div", { id: "live-box" });
  const experimentBox = el("div");
  const shadowBox = el("div");
  main.append(
    el("p", { class: "muted" }, link("#/endpoints", "Endpoints"), " / ", link(`#/endpoints/${encodeURIComponent(endpoint)}`, endpoint), " / live"),
    el("h1", {}, `${endpoint}: live`),
    el("div", { class: "row" }, labelled("Window", select), el("p", { class: "muted" }, `Refreshed every ${REFRESH_MS / 1000} s.`)),
    chartsBox,
    section("Experiment", experimentBox),
    section("Shadow comparison", shadowBox),
  );
  chartsBox.append(el("p", { class: "muted loading" }, "Loading…"));
  // The endpoint's variant order gives each variant the colour it has on the endpoint's page.
  const order = await registry.getEndpoint(endpoint, signal)
    .then((e) => (e.variants || []).map((v) => v.name))
    .catch(() => []);
  poll(chartsBox, signal, async () => {
    const data = await monitor.timeseries({ endpoint: `endpoints/${endpoint}`, window_seconds: windowSeconds, step_seconds: 10 }, signal);
    const series = data.series || [];
    return [stamp(), series.length ? charts(series, order) : notice("No traffic for this endpoint in the window yet.")];
  });
  poll(experimentBox, signal, async () => experimentView(await monitor.experiment(endpoint, { window_seconds: 3600 }, signal), order));
  poll(shadowBox, signal, async () => shadowView(await monitor.shadows(endpoint, { window_seconds: 3600 }, signal)));
}


// ------------------------------------------------------------------------------ drift

function featureCard(f) {
  const numeric = f.kind !== "CATEGORICAL";
  const edges = (f.bin_edges || []).map(Number);
  const labels = numeric ? edges.slice(0, -1).map((e) => num(e, 2)) : f.categories || [];
  const reasons = f.reasons || [];
  const state = f.insufficient_data
    ? badge("insufficient data", "warn")
    : f.drifted
      ? badge(`drifted: ${reasons.join(", ")}`, "bad")
      : badge("stable", "ok");
  return el(
    "article",
    { class: `feature${f.drifted ? " drifted" : ""}`, dataset: { feature: f.name, drifted: String(Boolean(f.drifted)) } },
    el("h3", {}, el("code", {}, f.name), state),
    el("div", { class: "scores" },
      el("span", {}, `PSI ${num(f.psi)}`),
      el("span", {}, `JS ${num(f.js_distance)}`),
      numeric ? el("span", {}, `KS ${num(f.ks_statistic)} (p ${num(f.ks_p_value)})`) : null,
      el("span", {}, `χ² p ${num(f.chi2_p_value)}`),
      el("span", {}, `${f.live_count} live`)),
    histogramPair(labels, f.baseline_counts || [], f.live_counts || [], { title: `${f.name}: baseline and live` }),
    (f.new_categories || []).length ? el("p", { class: "muted" }, `New categories: ${f.new_categories.join(", ")}`) : null,
  );
}

function ordered(features) {
  return [...features].sort((a, b) =>
    Number(Boolean(b.drifted)) - Number(Boolean(a.drifted)) ||
    Number(Boolean(a.insufficient_data)) - Number(Boolean(b.insufficient_data)) ||
    Number(b.psi) - Number(a.psi));
}

export async function drift(main, [model, version], query, signal) {
  document.title = `${model} v${version} — drift — ModelHub`;
  const windowSeconds = Number(query.get("window") || 3600);
  const select = el("select", { id: "drift-window" },
    [[60, "last minute"], [300, "last 5 minutes"], [3600, "last hour"]].map(([s, t]) => el("option", { value: s, selected: s === windowSeconds }, t)));
  select.addEventListener("change", () => { window.location.hash = `#/drift/${encodeURIComponent(model)}/${version}?window=${select.value}`; });
  const box = el("div", { id: "drift-box" });
  main.append(
    el("p", { class: "muted" }, link("#/models", "Models"), " / ", link(`#/models/${encodeURIComponent(model)}`, model), ` / v${version} / drift`),
    el("h1", {}, `Drift of ${model} v${version}`),
    el("p", { class: "lead" }, "Each feature's live distribution against the version's baseline (its training data profile): population stability index, Jensen–Shannon distance and Kolmogorov–Smirnov, drifted features first."),
    el("div", { class: "row" }, labelled("Live window", select)),
    box,
  );
  await fill(box, async () => {
    const report = await monitor.drift({ model: `models/${model}`, version, window_seconds: windowSeconds }, signal);
    const t = report.thresholds || {};
    const features = ordered(report.features || []);
    const predictions = ordered(report.predictions || []);
    return [
      el("div", { class: "card" },
        el("dl", { class: "kv" },
          el("dt", {}, "Drifted"), el("dd", { id: "drifted" }, (report.drifted || []).length ? report.drifted.map((d) => badge(d, "bad")) : "nothing"),
          el("dt", {}, "Baseline"), el("dd", {}, report.baseline_origin === "monitor" ? "set on the monitor" : "the version's data profile in the registry"),
          el("dt", {}, "Thresholds"), el("dd", {}, `PSI > ${t.psi}, JS > ${t.js}, KS > ${t.ks}, p < ${t.p_value}, at least ${t.min_samples} samples`),
          el("dt", {}, "Computed"), el("dd", {}, timeEl(report.time))),
        report.insufficient_data ? notice("Too few live samples to judge any feature yet: send traffic to this version.", "info") : null,
        el("ul", { class: "legend" }, el("li", {}, el("span", { class: "swatch baseline" }), "baseline"), el("li", {}, el("span", { class: "swatch live" }), "live"))),
      section("Features", el("div", { class: "features", id: "drift-features" }, features.map(featureCard))),
      predictions.length ? section("Predictions", el("div", { class: "features" }, predictions.map(featureCard))) : null,
    ];
  });
}

// ----------------------------------------------------------------------------- alerts

const STATE_KIND = { FIRING: "bad", PENDING: "warn", RESOLVED: "ok" };
const COMPARATORS = { GREATER_THAN: ">", GREATER_OR_EQUAL: "≥", LESS_THAN: "<", LESS_OR_EQUAL: "≤" };

function seriesText(s) {
  if (!s) return "everything";
  const parts = [];
  if (s.model) parts.push(id(s.model) + (s.version && s.version !== "0" ? ` v${s.version}` : ""));
  if (s.endpoint) parts.push(`endpoint ${id(s.endpoint)}`);
  if (s.variant) parts.push(`variant ${s.variant}`);
  return parts.join(", ") || "everything";
}

export async function alerts(main, _params, _query, signal) {
  document.title = "Alerts — ModelHub";
  const alertBox = el("div", { id: "alerts-box" });
  const ruleBox = el("div", { id: "rules-box" });
  main.append(
    el("h1", {}, "Alerts"),
    el("p", { class: "lead" }, `Pending, firing and recently resolved alerts, refreshed every ${REFRESH_MS / 1000} s; below, the rules that raise them.`),
    section("Alerts", alertBox),
    section("Rules", ruleBox),
  );
  alertBox.append(el("p", { class: "muted loading" }, "Loading…"));
  ruleBox.append(el("p", { class: "muted loading" }, "Loading…"));
  poll(alertBox, signal, async () => {
    const data = await monitor.alerts(signal);
    return [stamp(), table(
      [
        { title: "State", render: (a) => badge(a.state, STATE_KIND[a.state] || "") },
        { title: "Alert", render: (a) => el("div", {}, el("strong", {}, a.display_name || id(a.rule)), el("div", { class: "muted" }, id(a.rule))) },
        { title: "Metric", render: (a) => a.metric },
        { title: "Value / threshold", class: "num", render: (a) => `${num(a.value)} / ${num(a.threshold)}` },
        { title: "Active since", class: "hide-narrow", render: (a) => timeEl(a.active_since) },
        { title: "Changed", render: (a) => timeEl(a.last_transition_time) },
      ],
      data.alerts || [],
      { id: "alerts-table", empty: "No alert: every rule's condition is false." },
    )];
  });
  poll(ruleBox, signal, async () => {
    const data = await monitor.rules({ page_size: 500 }, signal);
    return table(
      [
        { title: "Rule", render: (r) => el("div", {}, el("strong", {}, r.display_name), el("div", { class: "muted" }, id(r.name))) },
        { title: "Condition", render: (r) => `${r.metric} ${COMPARATORS[r.comparator] || r.comparator} ${num(r.threshold)}` },
        { title: "Series", render: (r) => seriesText(r.series) },
        { title: "Window / for", class: "hide-narrow", render: (r) => `${r.window_seconds} s / ${num(r.for_seconds)} s` },
        { title: "", render: (r) => (r.disabled ? badge("disabled", "warn") : badge("enabled", "ok")) },
      ],
      data.rules || [],
      { id: "rules-table", empty: "No alert rule (modelhub alerts create …)." },
    );
  });
}

// ------------------------------------------------------------------------ deployments

const HEALTH_KIND = { SERVING: "ok", NOT_SERVING: "warn", UNREACHABLE: "bad" };
const MODEL_STATE_KIND = { READY: "ok", LOADING: "warn", UNLOADING: "warn", FAILED: "bad" };

export async function deployments(main, _params, _query, signal) {
  document.title = "Deployments — ModelHub";
  const fleetBox = el("div", { id: "fleet-box" });
  const desiredBox = el("div", { id: "deployments-box" });
  main.append(
    el("h1", {}, "Deployments"),
    el("p", { class: "lead" }, `Which inference replica has which version loaded, on which device, with how much memory (refreshed every ${REFRESH_MS / 1000} s); below, what the registry's deployments ask for.`),
    section("Inference replicas", fleetBox),
    section("Deployments (desired state)", desiredBox),
  );
  fleetBox.append(el("p", { class: "muted loading" }, "Loading…"));
  poll(fleetBox, signal, async () => {
    const data = await router.replicas(signal);
    const replicas = data.replicas || [];
    return [stamp(), replicas.length ? replicas.map(replicaCard) : notice("The router knows no inference replica.")];
  });
  await fill(desiredBox, async () => {
    const data = await registry.listDeployments({ page_size: 200 }, signal);
    return table(
      [
        { title: "Deployment", render: (d) => el("strong", {}, id(d.name)) },
        { title: "Model", render: (d) => link(`#/models/${encodeURIComponent(id(d.model))}`, id(d.model)) },
        { title: "Versions", render: (d) => (d.versions || []).map((v) => badge(`${v.alias ? `@${v.alias}` : v.version ? `v${v.version}` : "latest"} → v${v.resolved_version}`)) },
        { title: "Instances", class: "num", render: (d) => d.instance_count || 1 },
        { title: "Device", render: (d) => d.device || "AUTO" },
        { title: "Max batch", class: "num hide-narrow", render: (d) => d.batching?.max_batch_size || "default" },
        { title: "Updated", class: "hide-narrow", render: (d) => timeEl(d.update_time) },
      ],
      data.deployments || [],
      { id: "deployments-table", empty: "No deployment: versions load on demand." },
    );
  });
}

function replicaCard(r) {
  const used = Number(r.memory_used_bytes || 0);
  const budget = Number(r.memory_budget_bytes || 0);
  const loaded = (r.models || []).filter((m) => m.state !== "UNAVAILABLE");
  return el(
    "article",
    { class: "card", dataset: { replica: r.address, health: r.health } },
    el("h3", {}, el("code", {}, r.address), " ", badge(r.health, HEALTH_KIND[r.health] || "")),
    r.reason ? el("p", { class: "muted" }, r.reason) : null,
    el("dl", { class: "kv" },
      el("dt", {}, "Devices"), el("dd", {}, (r.devices || []).map((d) => badge(d)), (r.devices || []).length ? null : "—"),
      el("dt", {}, "Memory"), el("dd", {}, meter(used, budget, "memory used of budget"), ` ${bytes(used)}${budget ? ` of ${bytes(budget)}` : ""}`),
      el("dt", {}, "Server"), el("dd", {}, r.server_version || "—"),
      el("dt", {}, "Asked"), el("dd", {}, timeEl(r.observe_time))),
    table(
      [
        { title: "Model", render: (m) => link(`#/models/${encodeURIComponent(m.name)}`, m.name) },
        { title: "Version", render: (m) => `v${m.version}` },
        { title: "State", render: (m) => [badge(m.state, MODEL_STATE_KIND[m.state] || ""), m.pinned ? badge("pinned") : null] },
        { title: "Device", render: (m) => m.device || m.execution_provider || "—" },
        { title: "Memory", class: "num", render: (m) => bytes(m.memory_bytes) },
        { title: "Sessions", class: "num hide-narrow", render: (m) => m.instance_count },
        { title: "Last used", class: "hide-narrow", render: (m) => timeEl(m.last_used_time) },
      ],
      loaded,
      { empty: "Nothing loaded." },
    ),
  );
}

