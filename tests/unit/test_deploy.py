"""The docker-compose environment and the Envoy configs: valid, complete and in sync.

There is no Docker engine on these machines, so the compose file is validated against the
Compose Specification schema and every file, service, port and volume it names is checked;
the same wiring runs for real as local processes in tests/e2e."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelhub import envoy

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())


def test_compose_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((COMPOSE_DIR / "compose-spec.schema.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)


def test_compose_names_only_things_that_exist(compose: dict[str, Any]) -> None:
    services: dict[str, Any] = compose["services"]
    expected = {"registry", "inference", "router", "monitor", "envoy", "postgres",
                "otel-collector", "jaeger", "prometheus", "grafana", "migrate"}  # fmt: skip
    assert expected <= set(services)
    declared_volumes = set(compose.get("volumes", {}))
    declared_configs = set(compose.get("configs", {}))
    for config in compose.get("configs", {}).values():
        assert (COMPOSE_DIR / config["file"]).is_file(), config["file"]
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).is_file()
            dockerfile = (context / build.get("dockerfile", "Dockerfile")).read_text()
            assert re.search(rf"^FROM .* AS {build['target']}$", dockerfile, re.M), name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source}"
            else:
                assert source in declared_volumes, f"{name}: undeclared volume {source}"
        for config in service.get("configs", []):
            assert config["source"] in declared_configs
        command = service.get("command") or []
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, command
        if "healthcheck" in service and "modelhub.healthcheck" in service["healthcheck"]["test"]:
            port = service["healthcheck"]["test"][-1].rsplit(":", 1)[1]
            assert port in [str(p) for p in service.get("expose", [])], name
    # Dependencies on health need a health check to wait for.
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for dependency, condition in depends.items() if isinstance(depends, dict) else []:
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} → {dependency}"


def test_prometheus_scrapes_every_service(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    for service in ("registry", "inference", "router", "monitor"):
        env = compose["services"][service]["environment"]
        port = env[f"MODELHUB_{service.upper()}_METRICS_PORT"]
        assert f"{service}:{port}" in targets
        assert port in compose["services"][service]["expose"]


def test_grafana_dashboard_queries_modelhub_metrics() -> None:
    dashboards = list((COMPOSE_DIR / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        expressions = [
            target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
        ]
        assert expressions
        assert all("modelhub_" in expr for expr in expressions)


def test_compose_envoy_config_is_rendered_from_the_template() -> None:
    committed = (COMPOSE_DIR / "envoy" / "envoy.yaml").read_text()
    assert committed == envoy.render(envoy.COMPOSE), (
        "deploy/compose/envoy/envoy.yaml drifted from the template: run "
        "`python -m modelhub.envoy render --variant compose --out deploy/compose/envoy/envoy.yaml`"
    )


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_envoy_validates_both_variants(variant: str, tmp_path: Path) -> None:
    params = envoy.VARIANTS[variant]
    config = tmp_path / f"envoy-{variant}.yaml"
    # The compose descriptor path exists only in the container.
    config.write_text(
        envoy.render(envoy.EnvoyParams(**{**params.__dict__, "descriptor": str(envoy.DESCRIPTOR)}))
    )
    result = envoy.validate(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_the_two_variants_differ_only_in_addresses_and_tracing() -> None:
    local = envoy.render(envoy.LOCAL).splitlines()
    compose = envoy.render(envoy.COMPOSE).splitlines()
    differing = {a.strip() for a in local if a not in compose}
    allowed = ("address:", "socket_address:", "proto_descriptor:", "# Rendered", "# `python")
    assert all(line.startswith(allowed) for line in differing), differing


K8S_DIR = ROOT / "deploy" / "k8s"


def _k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((K8S_DIR / resource).read_text()) if d]
    return documents


def test_kubernetes_manifests_are_consistent() -> None:
    documents = _k8s_documents()
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    services = [d for d in documents if d["kind"] == "Service"]
    assert set(deployments) == {"registry", "inference", "router", "monitor", "envoy"}
    assert any(d["kind"] == "Job" for d in documents)  # migrations
    for name, deployment in deployments.items():
        template = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            template["metadata"]["labels"].items()
        )
        (container,) = template["spec"]["containers"]
        assert "readinessProbe" in container, name
        command = container["command"]
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None
            env = {e["name"]: e.get("value") for e in container["env"]}
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            prefix = f"MODELHUB_{name.upper()}_"
            assert env[f"{prefix}METRICS_PORT"] == str(ports["metrics"])
            assert container["readinessProbe"]["grpc"]["port"] == ports["grpc"]
    for service in services:
        selector = service["spec"]["selector"]
        matches = [
            d for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]  # fmt: skip
        assert matches, service["metadata"]["name"]
        port_names = {
            p["name"]
            for d in matches
            for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


def test_kubernetes_envoy_config_is_the_rendered_template() -> None:
    # Service names in the cluster are those of the compose network.
    assert (K8S_DIR / "envoy.yaml").read_text() == envoy.render(envoy.COMPOSE)
