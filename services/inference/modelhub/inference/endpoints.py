"""What inference knows of the registry's endpoints, from the Watch feed the deployment
watcher follows: per endpoint, a value (its audit policy, what it routes to), replaced as a
whole by a re-list.

`EndpointRoutes` lets the server trust only what the registry says: the `variant` metric
label is a variant an endpoint really has (anyone who reaches the port can send any header
value), and a version an endpoint routes to may load on demand for any caller that may
infer, like a deployed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class EndpointTable(Generic[T]):
    """Endpoint (`endpoints/{e}`) → value, kept in line with the registry by the
    deployment watcher.

    During a re-list (a watch from revision 0) the values in force stay in force until the
    snapshot is complete (`end_snapshot`), which then replaces them."""

    def __init__(self) -> None:
        self._live: dict[str, T] = {}
        self._snapshot: dict[str, T] | None = None

    def get(self, endpoint: str) -> T | None:
        return self._live.get(endpoint)

    def __len__(self) -> int:
        return len(self._live)

    def begin_snapshot(self) -> None:
        self._snapshot = {}

    def end_snapshot(self) -> None:
        if self._snapshot is not None:
            self._live = self._snapshot
            self._snapshot = None
            self._changed()

    def put(self, endpoint: str, value: T | None) -> None:
        """The endpoint changed (None: it was deleted, or holds nothing worth keeping)."""
        target = self._snapshot if self._snapshot is not None else self._live
        if value is not None:
            target[endpoint] = value
        else:
            target.pop(endpoint, None)
        if target is self._live:
            self._changed()

    def delete(self, endpoint: str) -> None:
        self.put(endpoint, None)

    def _changed(self) -> None:
        """Hook: the live values changed."""


@dataclass(frozen=True, slots=True)
class EndpointRoutes:
    """What an endpoint routes to: its variants' and shadows' names and the model versions
    (model id, version) their selectors resolve to."""

    names: frozenset[str] = frozenset()
    versions: frozenset[tuple[str, int]] = frozenset()


class RoutesTable(EndpointTable[EndpointRoutes]):
    def __init__(self) -> None:
        super().__init__()
        self._versions: frozenset[tuple[str, int]] = frozenset()

    def knows(self, endpoint: str, name: str) -> bool:
        """Whether `name` is a variant or shadow of `endpoint`."""
        routes = self._live.get(endpoint)
        return routes is not None and name in routes.names

    def routes_to(self, key: tuple[str, int]) -> bool:
        """Whether some endpoint routes to the model version `key`."""
        return key in self._versions

    def _changed(self) -> None:
        self._versions = frozenset(v for r in self._live.values() for v in r.versions)
