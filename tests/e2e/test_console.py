"""The web console in a real browser (headless Chromium driven by Selenium) against the whole
suite started as `make up` starts it: Envoy serves the console and /openapi.json itself, and
every page works through the JSON API. It loads every page (laptop and phone widths, with
screenshots under build/console-screenshots/), uploads a version with progress, promotes
it by alias and rolls it back, changes weights and checks that the preview, the saved
table and ExplainRoute agree, watches live charts gain points while traffic runs, opens a
drift report, shows 401 without a token and a down backend as unavailable — and fails on
any error in the browser's console or any call missing from /openapi.json."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import pytest_asyncio

from modelhub.devstack import demo
from modelhub.devstack.stack import demo_traffic
from modelhub.router import bucketing, envoy, xds
from tests.e2e.browser import Browser, require_browser, start_browser
from tests.e2e.suite import ADMIN_TOKEN, Suite, running_suite

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("console")]

PAGES = {
    # name: (hash, what shows that the page rendered its data)
    "models": ("#/models", "#models-table tbody tr a"),
    "model": ("#/models/fraud", "#versions-table tbody tr[data-version]"),
    "endpoints": ("#/endpoints", "#endpoints-table tbody tr a"),
    "endpoint": ("#/endpoints/fraud", "#routing-table tbody tr[data-variant]"),
    "live": ("#/live/fraud", "#live-charts svg.line-chart"),
    "drift": ("#/drift/fraud/2", "#drift-features .feature svg.histogram"),
    "alerts": ("#/alerts", "#rules-table"),
    "deployments": ("#/deployments", "#fleet-box article[data-replica]"),
}


# ------------------------------------------------------------------------------ helpers


def http(
    front: str,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = ADMIN_TOKEN,
    raw: bool = False,
) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://{front}{path}", data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=15) as response:
            status, payload, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, payload, headers = error.code, error.read(), dict(error.headers)
    if raw:
        return status, payload, {k.lower(): v for k, v in headers.items()}
    return (
        status,
        json.loads(payload) if payload else None,
        {k.lower(): v for k, v in headers.items()},
    )


def traffic(front: str, users: int, drift_shift: float = 0.0) -> None:
    """Demo traffic through Envoy from another thread (Selenium blocks this one)."""
    asyncio.run(
        demo_traffic(front, users=users, token=ADMIN_TOKEN, wait_s=30, drift_shift=drift_shift)
    )


def aliases(front: str) -> dict[str, int]:
    listed = http(front, "GET", "/v1/models/fraud/aliases")[1]["aliases"]
    return {a["alias"]: int(a["version"]) for a in listed}


def set_token(browser: Browser, token: str) -> None:
    browser.js(
        "token => { if (token) sessionStorage.setItem('modelhub.console.token', token);"
        " else sessionStorage.removeItem('modelhub.console.token');"
        " window.dispatchEvent(new CustomEvent('modelhub:token')); }",
        token,
    )


def type_into(element: Any, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)


def ranges_on_page(browser: Browser, table: str) -> dict[str, tuple[int, int]]:
    rows = browser.find_all(f"{table} tbody tr[data-variant]")
    return {
        r.get_attribute("data-variant"): (
            int(r.get_attribute("data-lower")),
            int(r.get_attribute("data-upper")),
        )
        for r in rows
    }


# ----------------------------------------------------------------------------- fixtures


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    require_browser()  # skip before starting anything where there is no browser
    var = tmp_path_factory.mktemp("console")
    # Alert rules evaluated every second: the alerts page shows one fire while it is open.
    env = {"MODELHUB_MONITOR_EVALUATION_INTERVAL_S": "1"}
    async with running_suite(var, auth=True, env=env) as suite:
        # Traffic for the live view, the experiment, the shadow and a drifting feature.
        await demo_traffic(suite.front, users=160, token=ADMIN_TOKEN, drift_shift=2.0)
        yield suite


@pytest.fixture(scope="module")
def browser(suite: Suite) -> Iterator[Browser]:
    chrome = start_browser(f"http://{suite.front}")
    try:
        yield chrome
    finally:
        chrome.driver.quit()


@pytest.fixture(autouse=True)
def no_browser_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test leaves in the browser's console fails it."""
    yield
    if "browser" in request.fixturenames:
        request.getfixturevalue("browser").drain()


# -------------------------------------------------------------------------------- tests


def test_envoy_serves_the_console_and_the_openapi_document(suite: Suite) -> None:
    front = suite.front
    status, _, headers = http(front, "GET", "/console", token=None, raw=True)
    assert status == 301 and headers["location"].endswith("/console/")
    status, page, headers = http(front, "GET", "/console/", token=None, raw=True)
    assert status == 200 and b'<script type="module" src="app.js">' in page
    assert headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    for name, content_type in xds.CONSOLE_ASSETS.items():
        status, body, headers = http(front, "GET", f"/console/{name}", token=None, raw=True)
        assert status == 200 and body, name
        assert headers["content-type"] == content_type, name
        assert headers["cache-control"] == "no-cache"
        assert body == (envoy.CONSOLE_DIR / name).read_bytes(), name
    status, _, _ = http(front, "GET", "/console/nothing.js", token=None, raw=True)
    assert status == 404
    status, document, headers = http(front, "GET", "/openapi.json", token=None)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert document["openapi"].startswith("3.") and "/v1/models" in document["paths"]
    # The CORS policy other web clients use still answers preflights.
    request = urllib.request.Request(
        f"http://{front}/v1/models",
        method="OPTIONS",
        headers={"origin": "https://app.example", "access-control-request-method": "GET"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_bucketing_and_sha256_in_the_browser_match_python(suite: Suite, browser: Browser) -> None:
    browser.open("#/models", PAGES["models"][1])
    keys = [f"user-{i}" for i in range(300)] + ["", "ключ", "🙂", "a\u0000b"]
    weights = [[50, 50], [90, 10], [1, 2, 3], [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3], [0, 5, 0.001]]
    got = browser.js_async(
        "const b = await import('./bucketing.js');"
        "const [keys, weights] = arguments;"
        "return {buckets: keys.map((k) => b.bucket('salt-1', k)),"
        " shadow: keys.map((k) => b.sampleBucket('salt-1', 'next', k)),"
        " scaled: weights.map((w) => b.scaled(w))};",
        keys,
        weights,
    )
    assert got["buckets"] == [bucketing.bucket("salt-1", k) for k in keys]
    assert got["shadow"] == [bucketing.sample_bucket("salt-1", "next", k) for k in keys]
    assert got["scaled"] == [bucketing.scaled(w) for w in weights]
    data = bytes(range(256)) * 40 + b"tail"
    digests = browser.js_async(
        "const {Sha256} = await import('./sha256.js');"
        "const data = new Uint8Array(arguments[0]);"
        "const whole = new Sha256().update(data).hex();"
        "const parts = new Sha256();"
        "for (let i = 0; i < data.length; i += 61) parts.update(data.subarray(i, i + 61));"
        "return [whole, parts.hex(), new Sha256().hex()];",
        list(data),
    )
    assert digests == [hashlib.sha256(data).hexdigest()] * 2 + [hashlib.sha256().hexdigest()]


def test_every_page_loads_at_laptop_and_phone_widths(suite: Suite, browser: Browser) -> None:
    set_token(browser, "")
    for name, (hash_, ready) in PAGES.items():
        browser.open(hash_, ready)
        assert browser.js("return document.title").endswith("— ModelHub"), name
        assert browser.find('[data-nav][aria-current="page"]'), name
        browser.screenshot(name)
        browser.drain()
    # Deployments: the replica serves the demo's versions on the CPU.
    assert browser.find('#fleet-box article[data-health="SERVING"]')
    assert "cpu" in browser.find("#fleet-box article").text
    browser.set_width(390, 844)
    try:
        for name in ("models", "model", "endpoint", "live", "drift"):
            hash_, ready = PAGES[name]
            browser.open(hash_, ready)
            overflow = browser.js("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name} is wider than a phone screen by {overflow}px"
            browser.screenshot(f"phone-{name}")
        browser.drain()
    finally:
        browser.set_width(1280, 900)


def test_keyboard_reaches_navigation_and_token(suite: Suite, browser: Browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.open("#/models", PAGES["models"][1])
    browser.js("document.activeElement.blur()")
    reached = []
    for _ in range(12):
        ActionChains(browser.driver).send_keys(Keys.TAB).perform()
        reached.append(
            browser.js(
                "return document.activeElement.id || document.activeElement.textContent.trim()"
            )
        )
    for wanted in (
        "skip",
        "Models",
        "Endpoints",
        "Alerts",
        "Deployments",
        "token-button",
    ):
        assert wanted in reached, reached
    # Enter on the focused link navigates.
    browser.js("document.querySelector('[data-nav=endpoints]').focus()")
    ActionChains(browser.driver).send_keys(Keys.ENTER).perform()
    browser.wait(PAGES["endpoints"][1])


def test_without_a_token_a_write_says_401(suite: Suite, browser: Browser) -> None:
    set_token(browser, "")
    browser.open("#/endpoints/fraud", "#weight-0")
    assert browser.find("#auth-state").text == "Anonymous"
    type_into(browser.find("#weight-0"), "60")
    browser.find("#save-endpoint").click()
    error = browser.wait('#save-status .alert.error[data-code="UNAUTHENTICATED"]')
    assert "401" in error.text and "token" in error.text.lower()
    browser.screenshot("endpoint-401-without-token")
    # Reads stay open to the anonymous role: the page itself rendered.
    assert browser.find("#routing-table")
    browser.drain(expected_statuses={401})


def test_upload_with_progress_promote_roll_back_and_archive(
    suite: Suite, browser: Browser, tmp_path: Path
) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    front = suite.front
    set_token(browser, "")
    browser.open("#/models/fraud", PAGES["model"][1])
    # Paste a token with the keyboard only.
    browser.find("#token-button").send_keys(Keys.ENTER)
    browser.wait("#token-input").send_keys(ADMIN_TOKEN, Keys.ENTER)
    browser.until(  # the header is redrawn with the token: the element may be between copies
        lambda: (state := browser.find("#auth-state")) is not None and state.text == "Token set",
        10,
        "no token",
    )
    browser.wait(PAGES["model"][1])

    artifact = demo.classifier(3)
    path = tmp_path / "fraud-v3.onnx"
    path.write_bytes(artifact)
    browser.find("#upload-file").send_keys(str(path))
    browser.find("#upload-run").send_keys("run-console-1")
    browser.find("#upload-dataset").send_keys("s3://data/fraud-2026-11")
    browser.find("#upload-commit").send_keys("c0ffee1")
    browser.find("#upload-author").send_keys("console-test")
    browser.find("#upload-aliases").send_keys("candidate")
    browser.find("#upload-start").click()
    status = browser.wait("#upload-status[data-created]", 30)
    created = int(status.get_attribute("data-created"))
    assert "Created models/fraud/versions/" in status.text
    bar = browser.find("#upload-progress")
    assert float(bar.get_attribute("value")) == float(bar.get_attribute("max")) > 0

    code, version, _ = http(front, "GET", f"/v1/models/fraud/versions/{created}")
    assert code == 200, version
    assert version["artifact"]["sha256"] == hashlib.sha256(artifact).hexdigest()
    assert version["artifact"]["size_bytes"] == str(len(artifact))
    assert version["source"]["run_id"] == "run-console-1"
    assert version["source"]["commit"] == "c0ffee1"
    assert version["aliases"] == ["candidate"]
    row = browser.wait(f'#versions-table tr[data-version="{created}"]')
    assert "candidate" in row.text and "run-console-1" in row.text

    # Promote: point challenger at the new version.
    previous = aliases(front)["challenger"]
    type_into(browser.find("#alias-name"), "challenger")
    Select(browser.find("#alias-version")).select_by_value(str(created))
    browser.find("#alias-set").click()
    browser.until(
        lambda: any(
            "challenger" in r.text and f"v{created}" in r.text
            for r in browser.find_all("#aliases-table tbody tr")
        ),
        15,
        "challenger did not move",
    )
    assert aliases(front)["challenger"] == created
    browser.screenshot("model-promoted")

    # Roll back to the READY version before it.
    browser.wait('button[data-rollback="challenger"]').click()
    browser.until(
        lambda: aliases(front)["challenger"] == previous, 15, "challenger was not rolled back"
    )

    # Archive the new version (confirmed in a dialog).
    browser.wait(f'button[data-archive="{created}"]').click()
    browser.wait("dialog [data-confirm]").click()
    browser.until(
        lambda: (
            "ARCHIVED"
            in (
                browser.find(f'#versions-table tr[data-version="{created}"]')
                or browser.find("body")
            ).text
        ),
        15,
        "the version was not archived",
    )
    assert http(front, "GET", f"/v1/models/fraud/versions/{created}")[1]["status"] == "ARCHIVED"
    browser.screenshot("model-after-upload-and-archive")


def test_weights_preview_saved_table_and_explain_route_agree(
    suite: Suite, browser: Browser
) -> None:
    front = suite.front
    set_token(browser, ADMIN_TOKEN)
    browser.open("#/endpoints/fraud", "#weight-0")
    endpoint = http(front, "GET", "/v1/endpoints/fraud")[1]
    salt = endpoint["salt"]
    names = [v["name"] for v in endpoint["variants"]]
    assert names == ["champion", "challenger"]
    before = bucketing.Ranges([float(v["weight"]) for v in endpoint["variants"]])

    type_into(browser.find("#weight-0"), "70")
    type_into(browser.find("#weight-1"), "30")
    browser.wait('#preview-ranges tr[data-variant="champion"][data-upper="7000"]')
    after = bucketing.Ranges([70, 30])
    preview = ranges_on_page(browser, "#preview-ranges")
    assert preview == {n: (r.lower, r.upper) for n, r in zip(names, after.ranges, strict=True)}
    moved = sum(
        max(0, min(a.upper, b.upper) - max(a.lower, b.lower))
        for i, a in enumerate(before.ranges)
        for j, b in enumerate(after.ranges)
        if i != j
    )
    summary = browser.find("#preview-summary").text
    assert f"{moved / bucketing.TOTAL * 100:.2f} %" in summary, summary
    assert "challenger" in browser.find("#preview-moves").text

    # Per key: the console's answer is the bucketing module's.
    keys = ["user-1", "user-2", "user-7", "user-42", "alice", "bob", "user-1009", "ключ"]
    predicted = {}
    for key in keys:
        type_into(browser.find("#explain-key"), key)
        local = browser.until(
            lambda key=key: (e := browser.find("#explain-local")) and key in e.text and e, 5, key
        )
        b = bucketing.bucket(salt, key)
        assert int(local.get_attribute("data-bucket")) == b
        assert local.get_attribute("data-now") == names[before.pick(b)]
        assert local.get_attribute("data-next") == names[after.pick(b)]
        predicted[key] = (b, local.get_attribute("data-next"))
    browser.screenshot("endpoint-preview")

    browser.find("#save-endpoint").click()
    browser.wait('#saved[data-routed="true"]', 30)
    assert ranges_on_page(browser, "#routing-table") == preview
    table = http(front, "GET", "/v1/router/table")[1]
    route = next(e for e in table["endpoints"] if e["name"] == "endpoints/fraud")
    assert {
        v["name"]: (int(v["bucket_lower"]), int(v["bucket_upper"])) for v in route["variants"]
    } == preview
    for key, (b, variant) in predicted.items():
        explained = http(front, "GET", f"/v1/router/endpoints/fraud:explain?key={quote(key)}")[1]
        assert int(explained["bucket_index"]) == b, key
        assert explained["variant"]["name"] == variant, key
    browser.find("#explain-ask").click()
    asked = browser.wait("#explain-router[data-variant]")
    assert asked.get_attribute("data-variant") == predicted[keys[-1]][1]
    browser.screenshot("endpoint-saved")

    # Someone else changes the endpoint first: the save says so, and a reload recovers.
    code, _, _ = http(
        front,
        "PATCH",
        "/v1/endpoints/fraud?update_mask=description",
        {"description": "changed elsewhere"},
    )
    assert code == 200
    type_into(browser.find("#weight-0"), "50")
    type_into(browser.find("#weight-1"), "50")
    browser.find("#save-endpoint").click()
    conflict = browser.wait('#save-status .alert.error[data-code="ABORTED"]')
    assert "Someone else changed this first" in conflict.text
    browser.screenshot("endpoint-conflict")
    browser.find("#reload-endpoint").click()
    browser.until(lambda: "changed elsewhere" in browser.text(), 10, "no reload")
    type_into(browser.wait("#weight-0"), "50")
    type_into(browser.find("#weight-1"), "50")
    browser.find("#save-endpoint").click()
    browser.wait('#saved[data-routed="true"]', 30)
    assert ranges_on_page(browser, "#routing-table") == {
        "champion": (0, 5000),
        "challenger": (5000, 10000),
    }
    browser.drain(expected_statuses={409})


def test_alerts_show_a_new_rule_firing_without_a_reload(suite: Suite, browser: Browser) -> None:
    browser.open("#/alerts", "#alerts-table")
    rule = {
        "display_name": "fraud is getting traffic",
        "metric": "request_rate",
        "series": {"model": "models/fraud"},
        "comparator": "GREATER_THAN",
        "threshold": 0,
        "window_seconds": "300",
    }
    status, body, _ = http(suite.front, "POST", "/v1/monitor/rules?rule_id=fraud-traffic", rule)
    assert status == 200, body
    browser.until(
        lambda: (
            "fraud is getting traffic"
            in (browser.find("#rules-table") or browser.find("body")).text
        ),
        15,
        "the new rule did not appear",
    )
    firing = browser.until(
        lambda: any("FIRING" in r.text for r in browser.find_all("#alerts-table tbody tr")),
        20,
        "the rule's alert did not show as firing",
    )
    assert firing
    browser.screenshot("alerts-firing")


def test_live_charts_gain_points_while_traffic_runs(suite: Suite, browser: Browser) -> None:
    set_token(browser, "")
    browser.open("#/live/fraud", PAGES["live"][1])
    first = int(browser.find("#live-charts").get_attribute("data-requests"))
    assert first > 0
    sender = threading.Thread(target=traffic, args=(suite.front, 40))
    sender.start()
    try:
        grown = browser.until(
            lambda: (
                (c := browser.find("#live-charts"))
                and int(c.get_attribute("data-requests")) >= first + 40
                and c
            ),
            40,
            "the live charts did not gain the new requests",
        )
    finally:
        sender.join(60)
    assert int(grown.get_attribute("data-points")) >= 1
    assert len(browser.find_all("#live-charts svg.line-chart")) == 4
    assert browser.find("#experiment-table tbody tr")
    assert "next" in browser.find("#shadows-table").text
    browser.screenshot("live-with-traffic")


def test_drift_report_shows_drifted_features_first(suite: Suite, browser: Browser) -> None:
    browser.open("#/drift/fraud/2?window=3600", PAGES["drift"][1])
    cards = browser.find_all("#drift-features .feature")
    flags = [c.get_attribute("data-drifted") == "true" for c in cards]
    assert len(cards) == demo.FEATURES
    assert flags == sorted(flags, reverse=True), flags
    assert len(browser.find_all("#drift-features svg.histogram")) == len(cards)
    drifted = browser.find("#drifted").text
    report = http(
        suite.front, "GET", "/v1/monitor/drift?model=models/fraud&version=2&window_seconds=3600"
    )[1]
    for name in report["drifted"]:
        assert name in drifted
    browser.screenshot("drift-report")


def test_every_call_the_console_made_is_in_the_openapi_document(
    suite: Suite, browser: Browser
) -> None:
    browser.drain()
    document = http(suite.front, "GET", "/openapi.json", token=None)[1]
    operations = []
    for template, item in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        for method, op in item.items():
            if method in ("get", "post", "patch", "delete", "put"):
                operations.append((method.upper(), pattern, op["operationId"]))
    used = set()
    for method, url in browser.requests:
        path = urlsplit(url).path
        if path.startswith("/console") or path == "/openapi.json":
            continue
        matches = [op for m, pattern, op in operations if m == method and pattern.match(path)]
        assert matches, f"{method} {path} is not in /openapi.json"
        used.add(matches[0])
    for op in (
        "RegistryService_ListModels",
        "RegistryService_ListModelVersions",
        "RegistryService_ListAliases",
        "RegistryService_StartUpload",
        "RegistryService_AppendUpload",
        "RegistryService_CommitUpload",
        "RegistryService_SetAlias",
        "RegistryService_ArchiveModelVersion",
        "RegistryService_UpdateEndpoint",
        "RouterService_GetRoutingTable",
        "RouterService_ExplainRoute",
        "RouterService_ListReplicas",
        "MonitorService_QueryTimeSeries",
        "MonitorService_GetExperimentReport",
        "MonitorService_GetShadowReport",
        "MonitorService_GetDriftReport",
        "MonitorService_ListAlerts",
        "MonitorService_ListAlertRules",
    ):
        assert op in used, f"the console never called {op}"


@pytest.mark.asyncio(loop_scope="module")
async def test_a_backend_that_is_down_shows_as_unavailable(suite: Suite, browser: Browser) -> None:
    monitor = next(r for r in suite.stack.running if r.spec.name == "monitor")
    await suite.stack.stop(monitor)

    def look() -> None:
        browser.open("#/alerts", "#alerts-box .alert.error")
        assert "The monitor is unavailable" in browser.find("#alerts-box").text
        browser.screenshot("alerts-monitor-down")
        # The rest of the console still works.
        browser.go("#/models", PAGES["models"][1])
        browser.drain(expected_statuses={503})

    await asyncio.to_thread(look)
