"""How fast the console shows its tables with a large registry: 1,000 models × 100 versions.

    .venv/bin/python bench/console_scale.py [--models 1000] [--versions 100] [--runs 5]

Starts a registry (SQLite) and Envoy exactly as `make up` does (routes seeded from the same
code, console included; router, monitor and inference are not needed by these pages),
fills the registry, then times with Selenium (headless Chromium) each navigation until the
page's table is on screen: the models page (first page, a prefix search, the next page) and
a model's page (its versions, newest first, and its aliases; then its older versions).
Times are measured in the page, from the hash change to the table's rows in the DOM
(MutationObserver), plus a cold load (browser navigation to the URL: the console's files
too). The console pages the API (50 rows a page) and the registry pages by key: no page
reads the whole registry.

How the registry is filled: one version is uploaded through the API (the registry checks
it with onnx.checker and stores its schema and artifact); the other 99,999 rows are
inserted with the registry's own table definitions (modelhub.registry.store.tables),
copying that version's schema and sharing its artifact (the blob store is content
addressed, so 100,000 versions of one file are one blob), before the registry serves. A
real upload costs ~10 ms of validation, digest and fsync: 100,000 of them would take most of
an hour and measure the upload path, not the reads the console makes; the rows are the
same either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modelhub.client import RegistryClient  # noqa: E402
from modelhub.devstack import demo  # noqa: E402
from modelhub.devstack.stack import (  # noqa: E402
    Ports,
    Stack,
    StackConfig,
    envoy_params,
    migrate,
    service_specs,
)
from modelhub.registry.store import tables as t  # noqa: E402
from modelhub.router import envoy  # noqa: E402
from tests.e2e.browser import start_browser  # noqa: E402

PAGE = 50  # rows per page the console asks for


def fill(db: Path, models: int, versions: int) -> float:
    """Clone the uploaded model m0000 v1 into `models` × `versions` rows; returns seconds."""
    started = time.perf_counter()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        model = conn.execute(sa.select(t.models).where(t.models.c.name == "m0000")).one()
        template = conn.execute(
            sa.select(t.model_versions).where(t.model_versions.c.model_pk == model.id)
        ).one()
        revision = int(conn.scalar(sa.select(t.registry_state.c.revision)) or 0)
        now = template.create_time
        conn.execute(
            sa.update(t.models)
            .where(t.models.c.id == model.id)
            .values(last_version=versions, labels={"owner": "team-0"})
        )
        conn.execute(
            t.models.insert(),
            [
                {
                    "name": f"m{i:04d}",
                    "uid": str(uuid.uuid4()),
                    "description": f"bench model {i}",
                    "labels": {"owner": f"team-{i % 10}"},
                    "last_version": versions,
                    "create_time": now,
                    "update_time": now,
                    "mod_revision": revision + i,
                }
                for i in range(1, models)
            ],
        )
        pks = dict(conn.execute(sa.select(t.models.c.name, t.models.c.id)).all())
        conn.execute(
            t.model_tags.insert(),
            [{"model_pk": pk, "tag": f"team-{int(n[1:]) % 10}"} for n, pk in pks.items()],
        )
        row = {
            k: v
            for k, v in template._mapping.items()
            if k not in ("id", "model_pk", "version", "uid")
        }
        revision += models
        for name, pk in pks.items():
            numbers = range(2 if name == "m0000" else 1, versions + 1)
            conn.execute(
                t.model_versions.insert(),
                [
                    {
                        **row,
                        "model_pk": pk,
                        "version": n,
                        "uid": str(uuid.uuid4()),
                        "source": {
                            "run_id": f"run-{n}",
                            "dataset": "s3://bench",
                            "commit": f"{n:07x}",
                        },
                        "mod_revision": revision + n,
                    }
                    for n in numbers
                ],
            )
            conn.execute(
                t.aliases.insert(),
                [
                    {
                        "model_pk": pk,
                        "alias": "champion",
                        "version": versions - 1,
                        "update_time": now,
                        "mod_revision": revision,
                    },
                    {
                        "model_pk": pk,
                        "alias": "challenger",
                        "version": versions,
                        "update_time": now,
                        "mod_revision": revision,
                    },
                ],
            )
        revision += versions + 1
        conn.execute(sa.update(t.registry_state).values(revision=revision))
    engine.dispose()
    return time.perf_counter() - started


# In the page: from the hash change until every [selector, at least n rows] is in the DOM.
TIMED = """
const [hash, wanted] = arguments;
const done = arguments[arguments.length - 1];
const rows = () => wanted.map(([selector]) => document.querySelectorAll(selector).length);
const shown = () => wanted.every(([selector, n]) => document.querySelectorAll(selector).length >= n);
const t0 = performance.now();
const observer = new MutationObserver(() => {
  if (shown()) { observer.disconnect(); done([performance.now() - t0, rows()[0]]); }
});
observer.observe(document.body, { childList: true, subtree: true });
window.location.hash = hash;
setTimeout(() => { observer.disconnect(); done([-1, rows()[0]]); }, 10000);
"""

Case = tuple[str, str, list[tuple[str, int]]]  # label, hash, [(selector, rows)]


def measure(browser: Any, cases: list[Case], runs: int) -> list[list[str]]:
    out = []
    for label, hash_, wanted in cases:
        times = []
        shown = 0
        for _ in range(runs):
            # Somewhere else first, so that the hash changes (a new navigation each run).
            browser.driver.execute_script("window.location.hash = '#/models?q=zzzz'")
            browser.wait("#models-table")
            elapsed, shown = browser.driver.execute_async_script(TIMED, hash_, wanted)
            if elapsed < 0:
                raise RuntimeError(f"{label}: the table did not show within 10 s")
            times.append(elapsed)
        out.append(_row(label, times, shown))
    return out


def cold(browser: Any, base: str, cases: list[Case], runs: int) -> list[list[str]]:
    out = []
    for label, hash_, wanted in cases:
        times = []
        for _ in range(runs):
            browser.driver.get("about:blank")
            started = time.perf_counter()
            browser.driver.get(f"{base}/console/{hash_}")
            browser.until(
                lambda w=wanted: all(len(browser.find_all(s)) >= n for s, n in w), 10, label
            )
            times.append((time.perf_counter() - started) * 1000)
        out.append(_row(f"{label} (cold load)", times, len(browser.find_all(wanted[0][0]))))
    return out


def _row(label: str, times: list[float], shown: int) -> list[str]:
    return [
        label,
        str(shown),
        f"{statistics.median(times):.0f}",
        f"{max(times):.0f}",
        "yes" if max(times) < 1000 else "NO",
    ]


def api_times(front: str, runs: int, model: str) -> list[list[str]]:
    calls = [
        ("ListModels (50)", "/v1/models?page_size=50"),
        (f"ListModels prefix {model[:3]}", f"/v1/models?page_size=50&name_prefix={model[:3]}"),
        (f"ListModelVersions {model} (50)", f"/v1/models/{model}/versions?page_size=50&view=BASIC"),
        (f"ListAliases {model}", f"/v1/models/{model}/aliases"),
    ]
    out = []
    for label, path in calls:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://{front}{path}", timeout=10) as response:
                    json.loads(response.read())
            except urllib.error.HTTPError as error:
                raise RuntimeError(f"{path}: {error.code} {error.read()[:300]!r}") from None
            times.append((time.perf_counter() - started) * 1000)
        out.append([label, f"{statistics.median(times):.1f}", f"{max(times):.1f}"])
    return out


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


async def run(args: argparse.Namespace) -> None:
    var = Path(tempfile.mkdtemp(prefix="console-scale-"))
    config = StackConfig(var=var, ports=Ports.free())
    stack = Stack(var)
    await migrate(stack, config)
    specs = {s.name: s for s in service_specs(config, [config.ports.inference])}
    params = replace(
        envoy_params(config, [config.ports.inference]), console_dir=str(envoy.CONSOLE_DIR)
    )
    (var / "envoy.yaml").write_text(envoy.render(params), encoding="utf-8")
    envoy.seed(params)
    registry = f"127.0.0.1:{config.ports.registry}"
    try:
        running = await stack.start(specs["registry"])
        artifact = var / "m.onnx"
        artifact.write_bytes(demo.classifier(1))
        async with RegistryClient(registry) as client:
            await client.push("m0000", artifact, create_model=True, author="bench")
        await stack.stop(running)
        seconds = fill(var / "registry.db", args.models, args.versions)
        print(
            f"filled {args.models} models × {args.versions} versions in {seconds:.1f} s", flush=True
        )
        await stack.start(specs["registry"])
        await stack.start(specs["envoy"])
        front = f"127.0.0.1:{config.ports.envoy}"
        print("\nJSON API through Envoy (ms, one request at a time):")
        mid = f"m{args.models // 2:04d}"
        print(table(["call", "median", "max"], api_times(front, args.runs, mid)))

        def browse() -> list[list[str]]:
            browser = start_browser(f"http://{front}")
            try:
                browser.open("#/models", "#models-table tbody tr a")
                last = f"m{args.models - 1:04d}"
                mid = f"m{args.models // 2:04d}"
                versions_rows = "#versions-table tbody tr[data-version]"
                models_rows = ("#models-table tbody tr a", min(PAGE, args.models))
                version_rows = (versions_rows, min(PAGE, args.versions))
                alias_rows = ("#aliases-table tbody tr td .badge", 2)
                cases: list[Case] = [
                    ("models page", "#/models", [models_rows]),
                    ("models page, name prefix", f"#/models?q={mid[:3]}", [(models_rows[0], 1)]),
                    (
                        "model page (versions, aliases)",
                        f"#/models/{mid}",
                        [version_rows, alias_rows],
                    ),
                    ("model page, last model", f"#/models/{last}", [version_rows, alias_rows]),
                ]
                rows = measure(browser, cases, args.runs)
                # The next pages, by the tokens the pages offer.
                browser.go("#/models", "#models-next")
                started = time.perf_counter()
                browser.find("#models-next").click()
                browser.until(
                    lambda: (
                        "page=" in browser.driver.current_url
                        and browser.find("#models-table tbody tr a")
                    ),
                    10,
                    "next page",
                )
                rows.append(
                    _row(
                        "models page 2 (click Next)",
                        [(time.perf_counter() - started) * 1000],
                        len(browser.find_all("#models-table tbody tr a")),
                    )
                )
                browser.go(f"#/models/{mid}", "#versions-next")
                started = time.perf_counter()
                browser.find("#versions-next").click()
                browser.until(
                    lambda: "page=" in browser.driver.current_url and browser.find(versions_rows),
                    10,
                    "older versions",
                )
                rows.append(
                    _row(
                        "model page, older versions (click)",
                        [(time.perf_counter() - started) * 1000],
                        len(browser.find_all(versions_rows)),
                    )
                )
                rows += cold(browser, f"http://{front}", cases[:1] + cases[2:3], args.runs)
                browser.drain()
                return rows
            finally:
                browser.driver.quit()

        rows = await asyncio.to_thread(browse)
        print(
            f"\nConsole, navigation → table shown (ms; median and max of {args.runs} runs; Selenium, headless Chromium):"
        )
        print(table(["page", "rows shown", "median", "max", "< 1 s"], rows))
    finally:
        await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
