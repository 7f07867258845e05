// Charts as plain SVG: line charts over time (live view), paired histograms (drift),
// intervals (experiment report) and meters (memory). Responsive through the viewBox; every
// chart has a title and a text summary for screen readers.

import { pct } from "./ui.js";

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function fmt(v) {
  if (v === 0) return "0";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return Number(v.toPrecision(2)).toString();
}

function clock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// series: [{name, points: [{t: epoch ms, v: number|null}]}]. A null value is a gap.
export function lineChart(series, { title, unit = "", width = 520, height = 220 } = {}) {
  const pad = { left: 58, right: 14, top: 10, bottom: 26 };
  const all = series.flatMap((s) => s.points);
  const values = all.map((p) => p.v).filter((v) => v !== null && Number.isFinite(v));
  const times = all.map((p) => p.t);
  const t0 = times.length ? Math.min(...times) : Date.now() - 3600e3;
  const t1 = times.length ? Math.max(...times) : Date.now();
  const yMax = niceMax(values.length ? Math.max(...values) : 0);
  const x = (t) => pad.left + ((t - t0) / Math.max(1, t1 - t0)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / yMax) * (height - pad.top - pad.bottom);
  const shown = values.length;
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart line-chart",
    role: "img",
    "aria-label": `${title}: ${series.length} series, ${shown} points`,
    "data-points": shown,
    "data-last": times.length ? new Date(t1).toISOString() : "",
  });
  root.append(svg("title", {}, title || "chart"));
  for (let i = 0; i <= 4; i += 1) {
    const v = (yMax * i) / 4;
    root.append(
      svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: pad.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, `${fmt(v)}${unit}`),
    );
  }
  for (let i = 0; i <= 4; i += 1) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    root.append(svg("text", { x: x(t), y: height - 6, class: "axis", "text-anchor": anchor }, clock(t)));
  }
  series.forEach((s, index) => {
    const color = s.color || PALETTE[index % PALETTE.length];
    let d = "";
    let pen = false;
    for (const p of s.points) {
      if (p.v === null || !Number.isFinite(p.v)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      pen = true;
    }
    const line = svg("path", { d, fill: "none", stroke: color, "stroke-width": 2, class: "series" });
    line.dataset.series = s.name;
    root.append(line);
    const last = [...s.points].reverse().find((p) => p.v !== null && Number.isFinite(p.v));
    if (last) {
      root.append(svg("circle", { cx: x(last.t), cy: y(last.v), r: 3, fill: color }));
    }
  });
  return root;
}

// The colour of `name` among `order` (an endpoint's variants): the same on every page.
export function colorOf(name, order) {
  const i = order.indexOf(name);
  return PALETTE[(i < 0 ? order.length : i) % PALETTE.length];
}

export function legend(names, colors = []) {
  const list = document.createElement("ul");
  list.className = "legend";
  names.forEach((name, index) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.backgroundColor = colors[index] || PALETTE[index % PALETTE.length];
    item.append(swatch, document.createTextNode(name));
    list.append(item);
  });
  return list;
}

// Baseline and live distributions over the same bins, as shares, bars side by side.
export function histogramPair(labels, baseline, live, { title, width = 320, height = 150 } = {}) {
  const pad = { left: 8, right: 8, top: 8, bottom: 22 };
  const share = (counts) => {
    const total = counts.reduce((a, b) => a + Number(b || 0), 0);
    return counts.map((c) => (total > 0 ? Number(c || 0) / total : 0));
  };
  const a = share(baseline);
  const b = share(live);
  const n = Math.max(a.length, b.length, 1);
  const top = niceMax(Math.max(0.01, ...a, ...b));
  const slot = (width - pad.left - pad.right) / n;
  const h = (v) => (v / top) * (height - pad.top - pad.bottom);
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart histogram",
    role: "img",
    "aria-label": `${title}: baseline and live shares over ${n} bins`,
  });
  root.append(svg("title", {}, title || "histogram"));
  for (let i = 0; i < n; i += 1) {
    const x0 = pad.left + i * slot;
    const bw = Math.max(1, slot / 2 - 1);
    root.append(
      svg("rect", { x: x0 + 1, y: height - pad.bottom - h(a[i] || 0), width: bw, height: h(a[i] || 0), class: "bar baseline" },
        svg("title", {}, `${labels[i] ?? i}: baseline ${pct(a[i])}`)),
      svg("rect", { x: x0 + 1 + bw, y: height - pad.bottom - h(b[i] || 0), width: bw, height: h(b[i] || 0), class: "bar live" },
        svg("title", {}, `${labels[i] ?? i}: live ${pct(b[i])}`)),
    );
  }
  root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom, class: "grid" }));
  if (labels.length) {
    const first = String(labels[0]);
    const last = String(labels[labels.length - 1]);
    root.append(
      svg("text", { x: pad.left, y: height - 6, class: "axis" }, first),
      svg("text", { x: width - pad.right, y: height - 6, class: "axis", "text-anchor": "end" }, last),
    );
  }
  return root;
}

// Rates with their intervals, one row per item: [{name, value, lower, upper}] in [0, 1].
export function intervals(items, { title, width = 480 } = {}) {
  const rowH = 26;
  const pad = { left: 110, right: 60 };
  const height = items.length * rowH + 24;
  const top = niceMax(Math.max(0.01, ...items.map((i) => i.upper || 0)));
  const x = (v) => pad.left + (v / top) * (width - pad.left - pad.right);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart intervals", role: "img", "aria-label": title });
  root.append(svg("title", {}, title || "intervals"));
  items.forEach((item, i) => {
    const cy = 12 + i * rowH + rowH / 2;
    const color = item.color || PALETTE[i % PALETTE.length];
    root.append(
      svg("text", { x: pad.left - 8, y: cy + 4, class: "axis", "text-anchor": "end" }, item.name),
      svg("line", { x1: x(item.lower || 0), x2: x(item.upper || 0), y1: cy, y2: cy, stroke: color, "stroke-width": 3 }),
      svg("circle", { cx: x(item.value || 0), cy, r: 5, fill: color }),
      svg("text", { x: width - 4, y: cy + 4, class: "axis", "text-anchor": "end" }, pct(item.value)),
    );
  });
  root.append(svg("text", { x: pad.left, y: height - 4, class: "axis" }, "0"));
  root.append(svg("text", { x: width - pad.right, y: height - 4, class: "axis", "text-anchor": "end" }, pct(top, 0)));
  return root;
}

// A horizontal bar: used / total.
export function meter(used, total, label) {
  const share = total > 0 ? Math.min(1, used / total) : 0;
  const root = svg("svg", { viewBox: "0 0 100 8", class: "meter", role: "img", "aria-label": label, preserveAspectRatio: "none" });
  root.append(svg("rect", { x: 0, y: 0, width: 100, height: 8, class: "meter-track" }));
  root.append(svg("rect", { x: 0, y: 0, width: (share * 100).toFixed(2), height: 8, class: share > 0.9 ? "meter-fill hot" : "meter-fill" }));
  return root;
}

// Shares of traffic as one stacked bar (routing table), widths in buckets of `total`.
export function stackedBar(parts, total, { title } = {}) {
  const root = svg("svg", { viewBox: `0 0 ${total} 24`, class: "stacked", role: "img", "aria-label": title, preserveAspectRatio: "none" });
  let x = 0;
  parts.forEach((part, i) => {
    if (part.width > 0) {
      root.append(svg("rect", { x, y: 0, width: part.width, height: 24, fill: PALETTE[i % PALETTE.length] },
        svg("title", {}, `${part.name}: [${x}, ${x + part.width})`)));
    }
    x += part.width;
  });
  return root;
}
