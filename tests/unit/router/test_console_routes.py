"""The web console's routes: Envoy answers /console/ and /openapi.json from files
(`direct_response`), past its JSON transcoder, with the folder as Envoy sees it in each
variant (tests/e2e/test_console.py loads them in a real Envoy and browser)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelhub.router import envoy, xds
from modelhub.router.settings import RouterSettings
from modelhub.router.table import empty_table

CONSOLE = envoy.CONSOLE_DIR
OPENAPI = CONSOLE.parent / xds.OPENAPI_NAME


def routes(options: xds.XdsOptions) -> list[dict[str, Any]]:
    config = xds.route_configuration(empty_table(), options)
    (host,) = config["virtual_hosts"]
    return list(host["routes"])


def by_path(options: xds.XdsOptions) -> dict[str, dict[str, Any]]:
    return {r["match"]["path"]: r for r in routes(options) if "path" in r["match"]}


def test_the_asset_list_is_the_folder() -> None:
    # Envoy serves only the files the router names; a file left out would 404, a name
    # without a file would make Envoy refuse every route.
    on_disk = {p.name for p in CONSOLE.iterdir() if p.is_file()}
    assert set(xds.CONSOLE_ASSETS) == on_disk


def test_every_asset_fits_a_direct_response() -> None:
    sizes = {p.name: p.stat().st_size for p in CONSOLE.iterdir()}
    if OPENAPI.is_file():  # written by `make proto`
        sizes[OPENAPI.name] = OPENAPI.stat().st_size
    too_big = {k: v for k, v in sizes.items() if v > xds.MAX_DIRECT_RESPONSE_BYTES // 2}
    assert not too_big, f"leave room to grow under the direct response limit: {too_big}"


def test_no_console_routes_without_a_folder() -> None:
    assert xds.console_routes(xds.XdsOptions()) == []
    assert not any(r.get("name", "").startswith("console:") for r in routes(xds.XdsOptions()))


def test_the_console_and_openapi_are_files_envoy_answers_with() -> None:
    console_dir, openapi_file = xds.console_paths("/etc/envoy/console")
    options = xds.XdsOptions(console_dir=console_dir, openapi_file=openapi_file)
    assert options.openapi_file == "/etc/envoy/openapi.json"
    paths = by_path(options)
    assert paths["/console"]["redirect"] == {"path_redirect": "/console/"}
    index = paths["/console/"]
    assert index["direct_response"] == {
        "status": 200,
        "body": {"filename": "/etc/envoy/console/index.html"},
    }
    for name, content_type in xds.CONSOLE_ASSETS.items():
        route = paths[f"/console/{name}"]
        assert route["direct_response"]["body"] == {"filename": f"/etc/envoy/console/{name}"}
        headers = {
            h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]
        }
        assert headers["content-type"] == content_type
        assert headers["cache-control"] == "no-cache"
        assert headers["x-content-type-options"] == "nosniff"
    headers = {h["header"]["key"]: h["header"]["value"] for h in index["response_headers_to_add"]}
    assert "script-src 'self'" in headers["content-security-policy"]
    assert paths["/openapi.json"]["direct_response"]["body"] == {
        "filename": "/etc/envoy/openapi.json"
    }
    # Every console route steps past the transcoder, which 404s paths it does not map.
    console = [r for r in routes(options) if r.get("name", "").startswith("console:")]
    assert len(console) == len(xds.CONSOLE_ASSETS) + 4  # + /console, /console/, 404, openapi
    for route in console:
        transcoder = route["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]
        assert transcoder["disabled"] is True
    catch_all = next(r for r in console if r["name"] == "console:not-found")
    assert catch_all["match"] == {"prefix": "/console/"}
    assert catch_all["direct_response"]["status"] == 404
    config = xds.route_configuration(empty_table(), options)
    assert config["max_direct_response_body_size_bytes"] == xds.MAX_DIRECT_RESPONSE_BYTES


def test_console_paths() -> None:
    assert xds.console_paths("") == ("", "")
    assert xds.console_paths("/etc/envoy/console/") == (
        "/etc/envoy/console",
        "/etc/envoy/openapi.json",
    )
    assert Path(xds.console_paths(str(CONSOLE))[1]) == OPENAPI


def test_cors_preflights_of_the_json_api_have_a_route() -> None:
    (preflight,) = [r for r in routes(xds.XdsOptions()) if r.get("name") == "cors-preflight"]
    assert preflight["match"]["headers"] == [
        {"name": ":method", "string_match": {"exact": "OPTIONS"}}
    ]
    # Before the /v2 catch-all, whose direct response the CORS filter would not answer on.
    names = [r.get("name") or str(r["match"]) for r in routes(xds.XdsOptions())]
    catch_all = names.index(str({"prefix": "/v2"}))
    assert names.index("cors-preflight") < catch_all


def test_the_router_setting_names_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELHUB_ROUTER_CONSOLE_DIR", raising=False)
    assert RouterSettings().console_dir == ""
    monkeypatch.setenv("MODELHUB_ROUTER_CONSOLE_DIR", "/etc/envoy/console")
    assert RouterSettings().console_dir == "/etc/envoy/console"


@pytest.mark.parametrize(
    ("variant", "folder"),
    [("local", str(CONSOLE)), ("compose", "/etc/envoy/console"), ("k8s", "/etc/envoy/console")],
)
def test_the_seed_serves_the_console(variant: str, folder: str, tmp_path: Path) -> None:
    params = replace(envoy.VARIANTS[variant], xds_dir=str(tmp_path))
    assert params.console_dir == folder
    envoy.seed(params)
    document = yaml.safe_load((tmp_path / xds.ROUTES_FILE).read_text())
    (config,) = document["resources"]
    files = {
        r["match"]["path"]: r["direct_response"]["body"]["filename"]
        for r in config["virtual_hosts"][0]["routes"]
        if "path" in r["match"] and "direct_response" in r
    }
    assert files["/console/"] == f"{folder}/index.html"
    assert files["/openapi.json"] == str(Path(folder).parent / "openapi.json")


def test_the_local_files_are_what_the_console_needs() -> None:
    index = (CONSOLE / "index.html").read_text()
    # Relative URLs only: the page is served at /console/.
    for name in ("app.css", "app.js", "favicon.svg"):
        assert f'"{name}"' in index
    # No inline script or style: the content security policy forbids them.
    assert "<script>" not in index and "style=" not in index
    for module in CONSOLE.glob("*.js"):
        text = module.read_text()
        for imported in re.findall(r'from "\./([a-z0-9]+\.js)"', text):
            assert imported in xds.CONSOLE_ASSETS, f"{module.name} imports {imported}"
    if OPENAPI.is_file():
        assert json.loads(OPENAPI.read_text())["openapi"].startswith("3.")
