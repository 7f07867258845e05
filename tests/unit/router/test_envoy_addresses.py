"""IPv6 addresses in the rendered Envoy bootstrap: an OTLP collector given as `[v6]:port`
and an IPv6 loopback admin address become socket addresses Envoy (and YAML) can read."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import yaml

from modelhub.router import envoy


def _cluster(bootstrap: Any, name: str) -> Any:
    (cluster,) = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == name]
    return cluster


def test_an_ipv6_collector_and_admin_address_render_without_brackets() -> None:
    params = replace(envoy.LOCAL, otlp_collector="[fd00::9]:4317", admin_address="::1")
    bootstrap = yaml.safe_load(envoy.render(params))
    collector = _cluster(bootstrap, "otel_collector")
    (group,) = collector["load_assignment"]["endpoints"]
    (host,) = group["lb_endpoints"]
    assert host["endpoint"]["address"]["socket_address"] == {
        "address": "fd00::9",
        "port_value": 4317,
    }
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "::1"


def test_an_ipv4_collector_renders_bare() -> None:
    params = replace(envoy.LOCAL, otlp_collector="10.1.2.3:4317")
    assert "socket_address: {address: 10.1.2.3, port_value: 4317}" in envoy.render(params)
