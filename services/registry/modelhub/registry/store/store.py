"""The registry's persistence, `RegistryStore`: one class made of a part per concern.

    base.py         write transactions: the revision counter, the change feed, StoreBase
    records.py      typed records of table rows
    reads.py        model, version and alias lookups and the resources built from them
    refs.py         which deployments/endpoints select which versions (version_refs)
    policies.py     the operations deployments and endpoints share (Policy)
    dependents.py   re-publishing what follows an alias when it may resolve otherwise
    models.py, versions.py, aliases.py, deployments.py, endpoints.py, claims.py, watch.py
                    the public operations of each resource (and of blob claims, Watch)

Every public operation is one transaction (see base.py for how writes are ordered), and
runs to completion even when its caller is cancelled (`modelhub.common.db.shielded`).
"""

from __future__ import annotations

from modelhub.registry.store.aliases import AliasStore
from modelhub.registry.store.claims import ClaimStore
from modelhub.registry.store.deployments import DeploymentStore
from modelhub.registry.store.endpoints import EndpointStore
from modelhub.registry.store.models import ModelStore
from modelhub.registry.store.versions import VersionStore
from modelhub.registry.store.watch import WatchStore


class RegistryStore(
    ModelStore,
    VersionStore,
    ClaimStore,
    AliasStore,
    DeploymentStore,
    EndpointStore,
    WatchStore,
):
    """Models, versions, blob claims, aliases, deployments, endpoints and their changes.

    `RegistryStore(db, history, on_commit)`: `history` changes are kept for Watch;
    `on_commit(revision)` runs after each write that recorded changes.
    """
