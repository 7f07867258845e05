"""The docker-compose environment, the Kubernetes manifests and the Envoy configs: valid,
complete and in sync.

There is no Docker engine or cluster on these machines, so the compose file is validated
against the Compose Specification schema, every file, service, port and volume the
deployments name is checked, and the wiring Envoy needs is checked against the rendered
bootstrap: the xDS directory the router writes and Envoy watches, seeded before Envoy
starts, and the router's default pool equal to Envoy's `inference` cluster. The same
wiring runs for real as local processes in tests/e2e."""

from __future__ import annotations

import importlib.util
import json
import posixpath
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelhub.router import envoy
from modelhub.router.settings import split_addresses
from modelhub.router.xds import CLUSTERS_FILE, DEFAULT_CLUSTER, ROUTES_FILE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
K8S_DIR = ROOT / "deploy" / "k8s"
RENDERED = {
    "compose": COMPOSE_DIR / "envoy" / "envoy.yaml",
    "k8s": K8S_DIR / "envoy.yaml",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())


def _bootstrap(variant: str) -> dict[str, Any]:
    """The committed rendered bootstrap of `variant`, parsed."""
    return yaml.safe_load(RENDERED[variant].read_text())


def _cluster_addresses(bootstrap: dict[str, Any], name: str) -> list[str]:
    (cluster,) = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == name]
    return [
        f"{socket['address']}:{socket['port_value']}"
        for group in cluster["load_assignment"]["endpoints"]
        for lb in group["lb_endpoints"]
        for socket in [lb["endpoint"]["address"]["socket_address"]]
    ]


def _listener(bootstrap: dict[str, Any], name: str) -> dict[str, Any]:
    (listener,) = [x for x in bootstrap["static_resources"]["listeners"] if x["name"] == name]
    return listener


def _xds_dirs(bootstrap: dict[str, Any]) -> set[str]:
    """Every directory the bootstrap reads dynamic configuration from (CDS and RDS)."""
    sources = [bootstrap["dynamic_resources"]["cds_config"]["path_config_source"]]
    listener = _listener(bootstrap, "ingress")
    for chain in listener["filter_chains"]:
        for network_filter in chain["filters"]:
            rds = network_filter["typed_config"].get("rds")
            if rds:
                sources.append(rds["config_source"]["path_config_source"])
    assert len(sources) == 2, "expected a CDS and an RDS path source"
    dirs = set()
    for source in sources:
        assert source["watched_directory"]["path"] == posixpath.dirname(source["path"])
        assert posixpath.basename(source["path"]) in (CLUSTERS_FILE, ROUTES_FILE)
        dirs.add(source["watched_directory"]["path"])
    return dirs


# ------------------------------------------------------------------------------ Envoy


@pytest.mark.parametrize("variant", ["compose", "k8s"])
def test_committed_envoy_configs_are_rendered_from_the_template(variant: str) -> None:
    path = RENDERED[variant]
    assert path.read_text() == envoy.render(envoy.VARIANTS[variant]), (
        f"{path.relative_to(ROOT)} drifted from the template: run `python -m modelhub.router.envoy "
        f"render --variant {variant} --out {path.relative_to(ROOT)}`"
    )


@pytest.mark.parametrize("variant", ["compose", "k8s"])
def test_envoy_validates_the_deployed_variants(
    variant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `validate` seeds build/xds-<variant> and swaps in the local descriptor set (the
    # container paths exist only in the containers).
    code = envoy.main(["validate", "--variant", variant])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "OK" in out.out


@pytest.mark.parametrize("access_log", ["errors", "all", "none"])
def test_envoy_validates_the_local_variant(tmp_path: Path, access_log: str) -> None:
    params = replace(envoy.LOCAL, xds_dir=str(tmp_path / "xds"), access_log=access_log)
    envoy.seed(params)
    config = tmp_path / "envoy-local.yaml"
    config.write_text(envoy.render(params))
    result = envoy.validate(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize("variant", ["local", "compose", "k8s"])
def test_the_admin_interface_listens_on_loopback_and_the_ops_listener_exposes_two_paths(
    variant: str,
) -> None:
    bootstrap = yaml.safe_load(envoy.render(envoy.VARIANTS[variant]))
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    ops = _listener(bootstrap, "ops")
    (hcm,) = ops["filter_chains"][0]["filters"]
    (host,) = hcm["typed_config"]["route_config"]["virtual_hosts"]
    routed = {r["match"]["path"]: r["route"]["cluster"] for r in host["routes"] if "route" in r}
    assert routed == {"/ready": "admin", "/stats/prometheus": "admin"}
    assert host["routes"][-1] == {
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}},
    }
    admin = _cluster_addresses(bootstrap, "admin")
    assert admin == [f"127.0.0.1:{envoy.VARIANTS[variant].admin_port}"]
    with pytest.raises(ValueError, match="loopback"):
        envoy.render(replace(envoy.VARIANTS[variant], admin_address="0.0.0.0"))


def test_the_variants_differ_only_in_addresses_paths_and_tracing() -> None:
    def normalized(params: envoy.EnvoyParams) -> list[str]:
        text = envoy.render(params)
        text = text.replace(params.xds_dir, "<xds>").replace(params.descriptor, "<descriptor>")
        return text.splitlines()

    rendered = {name: normalized(params) for name, params in envoy.VARIANTS.items()}
    allowed = ("address:", "socket_address:", "# Rendered", "# `python")
    # Only the compose variant traces: compare each variant against one with as much.
    for a, b in [("local", "k8s"), ("k8s", "local"), ("local", "compose"), ("k8s", "compose")]:
        differing = {line.strip() for line in rendered[a] if line not in rendered[b]}
        assert all(line.startswith(allowed) for line in differing), (a, b, differing)


# ---------------------------------------------------------------------- docker-compose


def test_compose_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((COMPOSE_DIR / "compose-spec.schema.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)


def test_compose_names_only_things_that_exist(compose: dict[str, Any]) -> None:
    services: dict[str, Any] = compose["services"]
    expected = {"registry", "inference", "router", "monitor", "envoy", "envoy-seed", "postgres",
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
        if (
            "healthcheck" in service
            and "modelhub.common.healthcheck" in service["healthcheck"]["test"]
        ):
            port = service["healthcheck"]["test"][-1].rsplit(":", 1)[1]
            assert port in [str(p) for p in service.get("expose", [])], name
    # Dependencies on health need a health check to wait for; one-shot steps do not restart.
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for dependency, condition in depends.items() if isinstance(depends, dict) else []:
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} → {dependency}"
            if condition["condition"] == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{name} → {dependency}"


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
    # Envoy's metrics through its ops listener (the admin port listens on loopback).
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "envoy"]
    assert job["metrics_path"] == "/stats/prometheus"
    assert job["static_configs"][0]["targets"] == [f"envoy:{envoy.COMPOSE.ops_port}"]
    assert str(envoy.COMPOSE.ops_port) in compose["services"]["envoy"]["expose"]


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


def _compose_mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """container path → (volume, read-only) of a service's named volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *options = volume.split(":")
        mounts[target] = (source, "ro" in options)
    return mounts


def _seed_variant(command: list[str]) -> str | None:
    """The variant a `python -m modelhub.router.envoy seed` command seeds, if it is one."""
    if command[:4] != ["python", "-m", "modelhub.router.envoy", "seed"]:
        return None
    assert "--xds-dir" not in command  # the variant's own directory, the bootstrap's
    return command[command.index("--variant") + 1]


def test_compose_router_and_envoy_share_the_xds_directory(compose: dict[str, Any]) -> None:
    services = compose["services"]
    xds_dir = envoy.COMPOSE.xds_dir
    assert _xds_dirs(_bootstrap("compose")) == {xds_dir}
    router, proxy = services["router"], services["envoy"]
    assert router["environment"]["MODELHUB_ROUTER_ENVOY_CONFIG_DIR"] == xds_dir
    volume, read_only = _compose_mounts(router)[xds_dir]
    assert not read_only
    assert _compose_mounts(proxy)[xds_dir] == (volume, True)  # Envoy only reads it
    assert volume in compose["volumes"]  # a named volume, not a per-container directory
    # The image creates the directory for the service user: a new named volume starts as a
    # copy of it (otherwise root-owned, and the router could not write).
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"mkdir -p [^\n]*{re.escape(xds_dir)}", dockerfile)
    assert re.search(rf"chown modelhub [^\n]*{re.escape(xds_dir)}", dockerfile)


def test_compose_seeds_the_xds_directory_before_envoy_and_router(compose: dict[str, Any]) -> None:
    services = compose["services"]
    xds_dir = envoy.COMPOSE.xds_dir
    seeds = [n for n, s in services.items() if _seed_variant(s.get("command") or [])]
    assert seeds == ["envoy-seed"]
    seed = services["envoy-seed"]
    assert _seed_variant(seed["command"]) == "compose"
    assert seed["restart"] == "no"
    volume, read_only = _compose_mounts(seed)[xds_dir]
    assert not read_only
    assert _compose_mounts(services["router"])[xds_dir][0] == volume
    for name in ("envoy", "router"):
        # The router too: a seed written after its first snapshot would replace it.
        condition = services[name]["depends_on"]["envoy-seed"]["condition"]
        assert condition == "service_completed_successfully", name
    # Envoy starts on the seed; a router that is down leaves it routing by the last files.
    assert services["envoy"]["depends_on"]["router"]["condition"] == "service_started"


def test_compose_router_addresses_match_envoys_clusters(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bootstrap = _bootstrap("compose")
    env = services["router"]["environment"]
    assert split_addresses(env["MODELHUB_ROUTER_BACKENDS"]) == _cluster_addresses(
        bootstrap, DEFAULT_CLUSTER
    )
    assert [env["MODELHUB_ROUTER_REGISTRY_ADDRESS"]] == _cluster_addresses(bootstrap, "registry")
    assert [env["MODELHUB_ROUTER_MONITOR_ADDRESS"]] == _cluster_addresses(bootstrap, "monitor")
    assert _cluster_addresses(bootstrap, "router") == [f"router:{services['router']['expose'][0]}"]
    for cluster in ("router", "registry", "monitor", DEFAULT_CLUSTER):
        for address in _cluster_addresses(bootstrap, cluster):
            host, port = address.rsplit(":", 1)
            assert port in services[host]["expose"], address
    inference = services["inference"]["environment"]
    assert [inference["MODELHUB_INFERENCE_MONITOR_ADDRESS"]] == _cluster_addresses(
        bootstrap, "monitor"
    )


def test_compose_envoy_has_its_bootstrap_and_descriptor(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["envoy"]
    command = proxy["command"]
    bootstrap_path = command[command.index("-c") + 1]
    (config,) = [c for c in proxy["configs"] if c["target"] == bootstrap_path]
    assert (COMPOSE_DIR / compose["configs"][config["source"]]["file"]).resolve() == (
        RENDERED["compose"]
    )
    # The descriptor set is baked into the image (the runtime stage the services build).
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile.split("AS runtime", 1)[1].split("\nFROM ", 1)[0]
    assert f"deploy/envoy/modelhub.pb {envoy.COMPOSE.descriptor}" in runtime
    assert proxy["build"]["target"] == "runtime"
    # The ops listener answers /ready for the health check; the admin port is not published.
    assert f"127.0.0.1:{envoy.COMPOSE.ops_port}/ready" in proxy["healthcheck"]["test"][-1]
    assert all(str(envoy.COMPOSE.admin_port) not in str(port) for port in proxy["ports"])


def test_nothing_names_envoys_removed_internal_listener() -> None:
    for path in [*COMPOSE_DIR.rglob("*.y*ml"), *K8S_DIR.rglob("*.yaml")]:
        text = path.read_text()
        assert "inference_lb" not in text and "8081" not in text, path


# ------------------------------------------------------------------------- Kubernetes


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())


def _k8s_documents() -> list[dict[str, Any]]:
    documents = []
    for resource in _kustomization()["resources"]:
        documents += [d for d in yaml.safe_load_all((K8S_DIR / resource).read_text()) if d]
    return documents


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s_documents() if d["kind"] == kind}


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _container(pod: dict[str, Any], name: str, key: str = "containers") -> dict[str, Any]:
    (container,) = [c for c in pod.get(key, []) if c["name"] == name]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _mounts(container: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """mount path → (volume, read-only)."""
    return {
        m["mountPath"]: (m["name"], bool(m.get("readOnly", False)))
        for m in container.get("volumeMounts", [])
    }


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _kustomization()
    generated = {
        file
        for generator in kustomization.get("configMapGenerator", [])
        for file in generator["files"]
    }
    listed = set(kustomization["resources"]) | generated | {"kustomization.yaml"}
    assert listed == {p.name for p in K8S_DIR.glob("*.yaml")}
    for name in listed:
        assert (K8S_DIR / name).is_file(), name


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_with_the_rendered_bootstrap() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    (config_map,) = [
        d for d in documents if d["kind"] == "ConfigMap" and "envoy.yaml" in d.get("data", {})
    ]
    assert config_map["data"]["envoy.yaml"] == RENDERED["k8s"].read_text()
    (proxy,) = [
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "envoy"
    ]
    names = {v["configMap"]["name"] for v in _pod(proxy)["volumes"] if "configMap" in v}
    assert config_map["metadata"]["name"] in names  # the generated (hashed) name


def test_kubernetes_manifests_are_consistent() -> None:
    documents = _k8s_documents()
    deployments = _by_kind("Deployment")
    services = list(_by_kind("Service").values())
    # The router runs as a sidecar of Envoy: no Deployment or Service of its own.
    assert set(deployments) == {"registry", "inference", "monitor", "envoy"}
    assert any(d["kind"] == "Job" for d in documents)  # migrations
    config_maps = set(_by_kind("ConfigMap")) | {
        g["name"] for g in _kustomization().get("configMapGenerator", [])
    }
    secrets = set(_by_kind("Secret"))
    claims = set(_by_kind("PersistentVolumeClaim"))
    pods = {name: _pod(d) for name, d in deployments.items()}
    pods |= {name: d["spec"]["template"]["spec"] for name, d in _by_kind("Job").items()}
    for deployment in deployments.values():
        template = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            template["metadata"]["labels"].items()
        )
    for name, pod in pods.items():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, (name, volume)
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, (name, volume)
        for container in pod.get("initContainers", []) + pod["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (name, container["name"], mount)
            for env in container.get("env", []):
                secret = env.get("valueFrom", {}).get("secretKeyRef")
                if secret:
                    assert secret["name"] in secrets, (name, env)
            command = container["command"]
            if command[:2] == ["python", "-m"]:
                assert importlib.util.find_spec(command[2]) is not None, command
        if name not in deployments:
            continue
        for container in pod["containers"]:
            command = container["command"]
            if command[:2] == ["python", "-m"]:
                # A ModelHub service: metrics port and gRPC probes on its own ports (the
                # router sidecar gates only its pod's first readiness: a startup probe).
                service = command[2].split(".")[1]
                env = _env(container)
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                assert env[f"MODELHUB_{service.upper()}_METRICS_PORT"] == str(ports["metrics"])
                probe = container.get("readinessProbe") or container["startupProbe"]
                assert probe["grpc"]["port"] == ports["grpc"], (name, container["name"])
            else:
                assert "readinessProbe" in container, (name, container["name"])
    for service in services:
        selector = service["spec"]["selector"]
        matches = [
            d for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]  # fmt: skip
        assert matches, service["metadata"]["name"]
        port_names = {p["name"] for d in matches for c in _pod(d)["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


def test_kubernetes_envoy_runs_its_bootstrap() -> None:
    pod = _pod(_by_kind("Deployment")["envoy"])
    proxy = _container(pod, "envoy")
    command = proxy["command"]
    bootstrap_path = command[command.index("-c") + 1]
    (mount,) = [m for m in proxy["volumeMounts"] if m["mountPath"] == bootstrap_path]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    generators = {g["name"]: g for g in _kustomization()["configMapGenerator"]}
    generator = generators[volume["configMap"]["name"]]
    assert mount["subPath"] in generator["files"]
    assert (K8S_DIR / mount["subPath"]).resolve() == RENDERED["k8s"]
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert ports == {"ingress": envoy.KUBERNETES.listen_port, "ops": envoy.KUBERNETES.ops_port}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "ops"}


def test_kubernetes_router_sidecar_shares_the_xds_directory() -> None:
    xds_dir = envoy.KUBERNETES.xds_dir
    assert _xds_dirs(_bootstrap("k8s")) == {xds_dir}
    pod = _pod(_by_kind("Deployment")["envoy"])
    proxy, router = _container(pod, "envoy"), _container(pod, "router")
    volume, read_only = _mounts(router)[xds_dir]
    assert not read_only
    assert _mounts(proxy)[xds_dir] == (volume, True)  # Envoy only reads it
    (spec,) = [v for v in pod["volumes"] if v["name"] == volume]
    assert "emptyDir" in spec  # the pod's own: each Envoy has its router
    assert _env(router)["MODELHUB_ROUTER_ENVOY_CONFIG_DIR"] == xds_dir
    # The xDS files are written owner-only: every container runs as one user.
    assert pod["securityContext"]["runAsUser"]
    for container in pod["containers"] + pod["initContainers"]:
        assert "runAsUser" not in container.get("securityContext", {}), container["name"]


def test_kubernetes_seeds_the_xds_directory_before_envoy_starts() -> None:
    xds_dir = envoy.KUBERNETES.xds_dir
    pod = _pod(_by_kind("Deployment")["envoy"])
    # initContainers run to completion before any container starts.
    seeds = [c for c in pod["initContainers"] if _seed_variant(c["command"])]
    assert [_seed_variant(c["command"]) for c in seeds] == ["k8s"]
    assert not any(_seed_variant(c["command"]) for c in pod["containers"])
    volume, read_only = _mounts(seeds[0])[xds_dir]
    assert not read_only
    assert _mounts(_container(pod, "router"))[xds_dir][0] == volume


def test_kubernetes_router_addresses_match_envoys_clusters() -> None:
    bootstrap = _bootstrap("k8s")
    pod = _pod(_by_kind("Deployment")["envoy"])
    router = _container(pod, "router")
    env = _env(router)
    backends = split_addresses(env["MODELHUB_ROUTER_BACKENDS"])
    assert backends == _cluster_addresses(bootstrap, DEFAULT_CLUSTER)
    assert [env["MODELHUB_ROUTER_REGISTRY_ADDRESS"]] == _cluster_addresses(bootstrap, "registry")
    assert [env["MODELHUB_ROUTER_MONITOR_ADDRESS"]] == _cluster_addresses(bootstrap, "monitor")
    # Envoy reaches the router in its own pod.
    ports = {p["name"]: p["containerPort"] for p in router["ports"]}
    assert _cluster_addresses(bootstrap, "router") == [f"127.0.0.1:{ports['grpc']}"]
    services = _by_kind("Service")
    assert "router" not in services
    for cluster in ("registry", "monitor", DEFAULT_CLUSTER):
        for address in _cluster_addresses(bootstrap, cluster):
            host, port = address.rsplit(":", 1)
            assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]], address
    # Every replica, not one virtual IP: Envoy balances and health-checks each.
    for address in backends:
        assert services[address.rsplit(":", 1)[0]]["spec"]["clusterIP"] == "None"
    inference = _container(_pod(_by_kind("Deployment")["inference"]), "inference")
    assert [_env(inference)["MODELHUB_INFERENCE_MONITOR_ADDRESS"]] == _cluster_addresses(
        bootstrap, "monitor"
    )
