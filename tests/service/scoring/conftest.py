"""A two-worker Dask cluster on 127.0.0.1 (one process and one thread per worker), shared
by the module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import dask
import pytest
from distributed import Client, LocalCluster


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Client]:
    # A task whose worker dies fails at once (the default retries it on 3 more workers):
    # the resume test kills a worker and expects the job to stop.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        yield client
