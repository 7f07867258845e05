"""The compose environment's Dask scheduler and worker: the inference image built with the
`score` extra, the worker pointed at the scheduler, their commands accepted by the installed
`dask` CLI, and the shared volume the jobs read and write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from distributed.cli.dask_scheduler import main as dask_scheduler
from distributed.cli.dask_worker import main as dask_worker

from tests import dockerfiles

COMPOSE = Path(__file__).resolve().parents[3] / "deploy" / "compose" / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_scheduler_and_worker_run_the_image_with_the_score_extra(services: dict[str, Any]) -> None:
    score = dockerfiles.optional_dependencies("inference")["score"]
    assert {dockerfiles.distribution(r) for r in score} >= {"dask", "pyarrow"}
    assert any(r.startswith("dask[distributed]") for r in score)  # the `dask` command
    for name in ("dask-scheduler", "dask-worker"):
        build = services[name]["build"]
        assert services[name]["image"] == "modelhub-score:latest"
        # The inference image (the one with ONNX Runtime and modelhub.scoring) ...
        dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile == dockerfiles.DOCKERFILES["inference"], name
        image = dockerfiles.read(dockerfile)
        assert build["target"] in image.targets, name
        # ... with EXTRAS the inference unit's extras, `score` among them.
        extras = build["args"]["EXTRAS"].split(",")
        assert "score" in extras, name
        installed = image.units(build["target"], build["args"])
        assert installed == {"common": set(), "inference": set(extras)}, name
        assert set(extras) <= set(dockerfiles.optional_dependencies("inference")), name


def test_the_worker_joins_the_scheduler(services: dict[str, Any]) -> None:
    scheduler, worker = services["dask-scheduler"], services["dask-worker"]
    scheduler_args = dask_scheduler.make_context("dask scheduler", scheduler["command"][2:]).params
    assert str(scheduler_args["port"]) in scheduler["expose"]
    worker_args = dask_worker.make_context("dask worker", worker["command"][2:]).params
    assert worker_args["scheduler"] == f"tcp://dask-scheduler:{scheduler_args['port']}"
    assert worker["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"
    assert "8786" in " ".join(scheduler["healthcheck"]["test"])


def test_jobs_run_in_the_worker_container_with_the_shared_volume(services: dict[str, Any]) -> None:
    worker = services["dask-worker"]
    assert worker["environment"]["MODELHUB_REGISTRY_ADDRESS"] == "registry:50051"
    assert "scoring-data:/var/lib/modelhub" in worker["volumes"]
    assert yaml.safe_load(COMPOSE.read_text())["volumes"].keys() >= {"scoring-data"}
