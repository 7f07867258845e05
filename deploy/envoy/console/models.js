// Models: the list (search, tags, owners), a model's page (versions, aliases, upload,
// promote and roll back, archive).

import { appendUpload, id, registry } from "./api.js";
import { digestBlob } from "./sha256.js";
import {
  badge, bytes, button, clear, confirmDialog, el, errorBox, fill, labelled, link,
  notice, section, short, table, timeEl,
} from "./ui.js";

const PAGE_SIZE = 50;
// A model's owner is its `owner` label (the registry has no owner field).
const OWNER_LABEL = "owner";

// ------------------------------------------------------------------------------ list

// Page tokens of the pages before the current one, per filter: "Previous" goes back.
const history = new Map();

function hashFor(filters, token) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  if (token) q.set("page", token);
  const s = q.toString();
  return `#/models${s ? `?${s}` : ""}`;
}

export async function list(main, _params, query, signal) {
  document.title = "Models — ModelHub";
  const filters = { q: query.get("q") || "", tag: query.get("tag") || "", owner: query.get("owner") || "" };
  const pageToken = query.get("page") || "";
  const key = JSON.stringify(filters);
  const search = el("input", { type: "search", name: "q", value: filters.q, placeholder: "fraud", id: "model-search", autocomplete: "off" });
  const tag = el("input", { type: "text", name: "tag", value: filters.tag, placeholder: "tag", id: "model-tag" });
  const owner = el("input", { type: "text", name: "owner", value: filters.owner, placeholder: "owner", id: "model-owner" });
  const form = el(
    "form",
    { class: "inline", role: "search", "aria-label": "Filter models" },
    labelled("Name starts with", search),
    labelled("Tag", tag),
    labelled("Owner", owner),
    el("button", { type: "submit" }, "Search"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    window.location.hash = hashFor({ q: search.value.trim(), tag: tag.value.trim(), owner: owner.value.trim() });
  });
  const results = el("div", { id: "models-results" });
  main.append(
    el("h1", {}, "Models"),
    el("p", { class: "lead" }, "Every registered model. Open one to see its versions, move its aliases or publish a new version."),
    el("div", { class: "card" }, form),
    results,
    newModelCard(),
  );
  await fill(results, async () => {
    // The registry filters by label (`owner=<value>`, an exact match) across every page.
    const label = filters.owner ? `${OWNER_LABEL}=${filters.owner}` : "";
    const page = await registry.listModels(
      { page_size: PAGE_SIZE, page_token: pageToken, name_prefix: filters.q, tag: filters.tag, label },
      signal,
    );
    const rows = page.models || [];
    const before = history.get(key) || [];
    const pager = el("div", { class: "pager" });
    if (pageToken) {
      pager.append(button("Previous page", () => {
        const stack = history.get(key) || [];
        const previous = stack.pop() || "";
        history.set(key, stack);
        window.location.hash = hashFor(filters, previous);
      }, { class: "secondary" }));
    }
    if (page.next_page_token) {
      pager.append(button("Next page", () => {
        history.set(key, [...before, pageToken]);
        window.location.hash = hashFor(filters, page.next_page_token);
      }, { class: "secondary", id: "models-next" }));
    }
    return [
      table(
        [
          { title: "Model", render: (m) => link(`#/models/${encodeURIComponent(id(m.name))}`, id(m.name)) },
          { title: "Description", class: "hide-narrow", render: (m) => m.description || "" },
          { title: "Tags", render: (m) => (m.tags || []).map((t) => badge(t)) },
          { title: "Owner", render: (m) => m.labels?.[OWNER_LABEL] || "" },
          { title: "Latest", class: "num", render: (m) => (m.latest_version && m.latest_version !== "0" ? `v${m.latest_version}` : "—") },
          { title: "Updated", class: "hide-narrow", render: (m) => timeEl(m.update_time) },
        ],
        rows,
        { id: "models-table", empty: "No model matches.", caption: `${rows.length} model${rows.length === 1 ? "" : "s"} on this page` },
      ),
      pager,
    ];
  });
}

function newModelCard() {
  const card = section("Publish a new model");
  const name = el("input", { type: "text", id: "new-model-name", placeholder: "my-model", pattern: "[a-z]([a-z0-9-]{0,61}[a-z0-9])?", autocomplete: "off" });
  const holder = el("div");
  const go = button("Continue", () => {
    const model = name.value.trim();
    if (!/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/.test(model)) {
      clear(holder).append(notice("A model id is 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-'.", "error"));
      return;
    }
    clear(holder).append(uploadPanel(model, { createModel: true, onDone: (v) => { window.location.hash = `#/models/${encodeURIComponent(id(v.model))}`; } }));
  });
  card.append(el("div", { class: "row" }, labelled("Model id", name), go), holder);
  return card;
}

// ------------------------------------------------------------------------- a model

function lineage(v) {
  const s = v.source || {};
  const parts = [];
  if (s.run_id) parts.push(["run", s.run_id]);
  if (s.dataset) parts.push(["dataset", s.dataset]);
  if (s.commit) parts.push(["commit", s.commit]);
  if (v.author) parts.push(["author", v.author]);
  return parts.map(([k, val]) => el("div", {}, el("span", { class: "muted" }, `${k} `), val));
}

function tensorList(specs) {
  return (specs || []).map((t) =>
    el("div", {}, el("code", {}, t.name), ` ${t.datatype} [${(t.shape || []).map((d, i) => (d === "-1" || d === -1 ? t.dim_names?.[i] || "?" : d)).join(", ")}]`));
}

function opset(schema) {
  const sets = schema?.opsets || [];
  const main = sets.find((o) => !o.domain) || sets[0];
  return main ? `${main.domain || "ai.onnx"} ${main.version}` : "";
}

function statusBadge(status) {
  return status === "READY" ? badge("READY", "ok") : status === "ARCHIVED" ? badge("ARCHIVED", "warn") : badge(status || "?");
}

function details(v) {
  const s = v.schema || {};
  const rows = [
    ["Name", v.name],
    ["sha256", el("code", {}, v.artifact?.sha256 || "")],
    ["Size", bytes(v.artifact?.size_bytes)],
    ["Inputs", tensorList(s.inputs)],
    ["Outputs", tensorList(s.outputs)],
    ["Opsets", (s.opsets || []).map((o) => `${o.domain || "ai.onnx"} ${o.version}`).join(", ")],
    ["Producer", `${s.producer_name || ""} ${s.producer_version || ""}`.trim()],
    ["IR version", s.ir_version || ""],
    ["Lineage", lineage(v)],
    ["Description", v.description || ""],
    ["Tags", (v.tags || []).map((t) => badge(t))],
    ["Metadata", Object.entries(v.metadata || {}).map(([k, val]) => el("div", {}, el("code", {}, k), ` = ${val}`))],
  ];
  if (v.derivation?.parent) rows.push(["Derived from", `${v.derivation.parent} (${v.derivation.method})`]);
  if (v.evaluation?.rows) {
    const e = v.evaluation;
    rows.push(["Evaluation", `${e.rows} rows: max |Δ| ${e.max_abs_diff}, size ×${Number(e.size_ratio).toFixed(2)}, latency ×${Number(e.latency_ratio_batch1).toFixed(2)}`]);
  }
  return el("dl", { class: "kv" }, rows.flatMap(([k, val]) => [el("dt", {}, k), el("dd", {}, val)]));
}

export async function detail(main, [model], query, signal) {
  document.title = `${model} — ModelHub`;
  const header = el("div");
  const aliasBox = el("div");
  const versionsBox = el("div");
  const message = el("div", { "aria-live": "polite" });
  main.append(
    el("p", { class: "muted" }, link("#/models", "Models"), " / ", model),
    header,
    message,
    el("div", { class: "grid2" }, section("Aliases", aliasBox), section("Publish a version", uploadPanel(model, { onDone: () => reload() }))),
    section("Versions", versionsBox),
  );
  const pageToken = query.get("page") || "";

  const reload = async () => {
    // Three calls at once; the alias form needs the versions page too.
    const versionsLoad = registry.listVersions(model, { page_size: PAGE_SIZE, page_token: pageToken, view: "BASIC" }, signal);
    const aliasesLoad = registry.listAliases(model, signal);
    await Promise.all([
      fill(header, async () => {
        const m = await registry.getModel(model, signal);
        const labels = Object.entries(m.labels || {});
        return [
          el("h1", {}, id(m.name)),
          m.description ? el("p", { class: "lead" }, m.description) : null,
          el(
            "dl",
            { class: "kv" },
            el("dt", {}, "Tags"), el("dd", {}, (m.tags || []).map((t) => badge(t)), (m.tags || []).length ? null : "—"),
            el("dt", {}, "Labels"), el("dd", {}, labels.length ? labels.map(([k, v]) => badge(`${k}=${v}`)) : "—"),
            el("dt", {}, "Latest version"), el("dd", {}, m.latest_version && m.latest_version !== "0" ? `v${m.latest_version}` : "none yet"),
            el("dt", {}, "Updated"), el("dd", {}, timeEl(m.update_time)),
          ),
        ];
      }),
      fill(versionsBox, async () => {
        const page = await versionsLoad;
        return versionsTable(model, page.versions || [], page.next_page_token, pageToken, message, reload);
      }, { retry: reload }),
      fill(aliasBox, async () => {
        const [aliases, page] = await Promise.all([aliasesLoad, versionsLoad]);
        return aliasesView(model, aliases.aliases || [], page.versions || [], message, reload);
      }, { retry: reload }),
    ]);
  };
  await reload();
}

function versionsTable(model, versions, next, current, message, reload) {
  const rows = [];
  const body = el("tbody");
  for (const v of versions) {
    const detailRow = el("tr", { class: "detail", hidden: true }, el("td", { colspan: 9 }, details(v)));
    const toggle = button(`v${v.version}`, () => {
      const open = detailRow.hidden;
      detailRow.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
    }, { class: "secondary small", "aria-expanded": "false", title: "Show details" });
    const actions = el("div", { class: "row" });
    actions.append(link(`#/drift/${encodeURIComponent(model)}/${v.version}`, "Drift"));
    if (v.status === "READY") {
      actions.append(button("Promote…", () => {
        // Fills the alias form with this version: name the alias there and set it.
        const select = document.getElementById("alias-version");
        const name = document.getElementById("alias-name");
        if (!select || !name) return;
        select.value = String(v.version);
        name.scrollIntoView({ block: "center" });
        name.focus();
      }, { class: "secondary small", dataset: { promote: v.version } }));
      actions.append(button("Archive", async () => {
        const ok = await confirmDialog(
          `Archive ${model} v${v.version}?`,
          "An archived version stays downloadable but is never `latest` and cannot be newly deployed or routed to.",
          "Archive",
        );
        if (!ok) return;
        try {
          await registry.archiveVersion(model, v.version, v.etag);
          clear(message).append(notice(`Archived v${v.version}.`, "success"));
          await reload();
        } catch (error) {
          clear(message).append(errorBox(error));
        }
      }, { class: "danger small", dataset: { archive: v.version } }));
    }
    const row = el(
      "tr",
      { dataset: { version: v.version } },
      el("td", {}, toggle),
      el("td", {}, statusBadge(v.status)),
      el("td", {}, (v.aliases || []).map((a) => badge(a, "alias"))),
      el("td", {}, short(v.artifact?.sha256)),
      el("td", { class: "num" }, bytes(v.artifact?.size_bytes)),
      el("td", { class: "hide-narrow" }, tensorList(v.schema?.inputs)),
      el("td", { class: "hide-narrow" }, opset(v.schema)),
      el("td", { class: "hide-narrow" }, lineage(v), timeEl(v.create_time)),
      el("td", {}, actions),
    );
    body.append(row, detailRow);
    rows.push(row);
  }
  if (!versions.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "empty" }, "No version yet: publish one.")));
  const head = el("tr", {}, ["Version", "Status", "Aliases", "sha256", "Size", "Inputs", "Opset", "Lineage", ""].map((t, i) =>
    el("th", { scope: "col", class: [5, 6, 7].includes(i) ? "hide-narrow" : i === 4 ? "num" : undefined }, t)));
  const pager = el("div", { class: "pager" });
  if (current) pager.append(link(`#/models/${encodeURIComponent(model)}`, "First page"));
  if (next) pager.append(link(`#/models/${encodeURIComponent(model)}?page=${encodeURIComponent(next)}`, "Older versions", { id: "versions-next" }));
  return [el("div", { class: "table-wrap" }, el("table", { id: "versions-table" }, el("caption", {}, "Newest first"), el("thead", {}, head), body)), pager];
}

function aliasesView(model, aliases, versions, message, reload) {
  const ready = versions.filter((v) => v.status === "READY").map((v) => Number(v.version));
  const setAlias = async (alias, version, verb) => {
    try {
      await registry.setAlias(model, alias, version);
      clear(message).append(notice(`${verb}: ${alias} → v${version}.`, "success"));
      await reload();
    } catch (error) {
      clear(message).append(errorBox(error));
    }
  };
  const rows = aliases.map((a) => {
    const older = ready.filter((n) => n < Number(a.version)).sort((x, y) => y - x)[0];
    return { ...a, older };
  });
  const aliasInput = el("input", { type: "text", id: "alias-name", list: "alias-names", placeholder: "champion", autocomplete: "off" });
  const versionSelect = el("select", { id: "alias-version" }, ready.map((n) => el("option", { value: n }, `v${n}`)));
  const form = el(
    "form",
    { class: "inline", "aria-label": "Set an alias" },
    labelled("Alias", aliasInput),
    el("datalist", { id: "alias-names" }, aliases.map((a) => el("option", { value: a.alias }))),
    labelled("Version", versionSelect),
    el("button", { type: "submit", id: "alias-set" }, "Set alias"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const alias = aliasInput.value.trim();
    if (!alias || !versionSelect.value) {
      clear(message).append(notice("Name an alias and a version.", "error"));
      return;
    }
    setAlias(alias, versionSelect.value, "Alias set");
  });
  return [
    table(
      [
        { title: "Alias", render: (a) => badge(a.alias, "alias") },
        { title: "Version", render: (a) => `v${a.version}` },
        { title: "Moved", render: (a) => timeEl(a.update_time) },
        {
          title: "",
          render: (a) =>
            a.older
              ? button(`Roll back to v${a.older}`, () => setAlias(a.alias, a.older, "Rolled back"), { class: "secondary small", dataset: { rollback: a.alias } })
              : "",
        },
      ],
      rows,
      { id: "aliases-table", empty: "No alias yet." },
    ),
    el("h3", {}, "Promote: point an alias at a version"),
    ready.length ? form : el("p", { class: "muted" }, "No READY version on this page."),
  ];
}

// ---------------------------------------------------------------------------- upload

// Hash, then StartUpload / AppendUpload (≤ max_chunk_bytes each) / CommitUpload, with a
// progress bar; a failed chunk is retried from where the server says the session stands.
export function uploadPanel(model, { createModel = false, onDone = () => {} } = {}) {
  const file = el("input", { type: "file", id: "upload-file", accept: ".onnx,application/octet-stream" });
  const description = el("input", { type: "text", id: "upload-description" });
  const author = el("input", { type: "text", id: "upload-author" });
  const run = el("input", { type: "text", id: "upload-run" });
  const dataset = el("input", { type: "text", id: "upload-dataset" });
  const commit = el("input", { type: "text", id: "upload-commit" });
  const aliases = el("input", { type: "text", id: "upload-aliases", placeholder: "challenger" });
  const bar = el("progress", { max: 1, value: 0, id: "upload-progress", hidden: true });
  const status = el("div", { "aria-live": "polite", id: "upload-status" });
  const start = el("button", { type: "submit", id: "upload-start" }, "Upload");
  let controller = null;
  const cancel = button("Cancel upload", () => controller?.abort(), { class: "secondary", hidden: true, id: "upload-cancel" });
  const form = el(
    "form",
    { class: "stack", "aria-label": `Upload a version of ${model}` },
    labelled("ONNX file", file),
    el("div", { class: "row" }, labelled("Description", description), labelled("Author", author)),
    el("div", { class: "row" }, labelled("Run", run), labelled("Dataset", dataset), labelled("Commit", commit)),
    labelled("Aliases (comma-separated)", aliases, "Point these aliases at the new version in the same transaction."),
    el("div", { class: "row" }, start, cancel),
    bar,
    status,
  );
  const say = (text, kind = "info") => clear(status).append(notice(text, kind));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const blob = file.files?.[0];
    if (!blob) {
      say("Choose an ONNX file first.", "error");
      return;
    }
    controller = new AbortController();
    start.disabled = true;
    cancel.hidden = false;
    bar.hidden = false;
    const metadata = {
      parent: `models/${model}`,
      create_model: createModel,
      description: description.value.trim(),
      author: author.value.trim(),
      source: { run_id: run.value.trim(), dataset: dataset.value.trim(), commit: commit.value.trim() },
      aliases: aliases.value.split(",").map((a) => a.trim()).filter(Boolean),
      size_bytes: String(blob.size),
    };
    try {
      const version = await upload(blob, metadata, { bar, say, signal: controller.signal });
      say(`Created ${version.name} (sha256 ${version.artifact.sha256.slice(0, 12)}…, ${bytes(version.artifact.size_bytes)}).`, "success");
      status.dataset.created = version.version;
      form.reset();
      onDone(version);
    } catch (error) {
      if (error?.name === "AbortError") say("Upload cancelled: the server released its bytes.", "info");
      else clear(status).append(errorBox(error));
    } finally {
      start.disabled = false;
      cancel.hidden = true;
      controller = null;
    }
  });
  return form;
}

async function upload(blob, metadata, { bar, say, signal }) {
  const total = blob.size || 1;
  say(`Hashing ${bytes(blob.size)}…`);
  bar.max = total * 2; // hashing counts for the first half
  metadata.sha256 = await digestBlob(blob, (done) => { bar.value = done; });
  if (signal.aborted) throw new DOMException("aborted", "AbortError");
  const session = await registry.startUpload(metadata);
  const name = id(session.name);
  const chunk = Number(session.max_chunk_bytes) || 8 << 20;
  let offset = Number(session.received_bytes) || 0;
  let committing = false;
  try {
    let failures = 0;
    while (offset < blob.size) {
      const part = blob.slice(offset, Math.min(blob.size, offset + chunk));
      const at = offset;
      say(`Uploading: ${bytes(at)} of ${bytes(blob.size)} (${Math.floor((at / total) * 100)} %)`);
      try {
        const state = await appendUpload(name, at, part, (loaded) => { bar.value = total + at + loaded; }, signal);
        offset = Number(state.received_bytes);
        failures = 0;
      } catch (error) {
        if (error?.name === "AbortError" || failures >= 3 || error.code !== "UNAVAILABLE") throw error;
        failures += 1;
        // Where does the session stand? Resume from there.
        offset = Number((await registry.getUpload(name)).received_bytes);
      }
    }
    bar.value = bar.max;
    say("Validating the model (sha256, size, onnx.checker)…");
    committing = true;
    return await registry.commitUpload(name);
  } catch (error) {
    // A session cut short releases its bytes now rather than at its expiry (a commit, failed
    // or not, has ended it already).
    if (!committing) registry.cancelUpload(name).catch(() => {});
    throw error;
  }
}

