"""The inference fleet (`RouterService.ListReplicas`): every inference replica the router
sends traffic to, whether it answers, and what it holds — the one view the CLI's `fleet`,
`deployments apply --wait` and the console's deployments page read.

Which replicas: the router's pools (the default pool and the pools endpoints name). A pool
address that is a DNS name stands for every address it resolves to (a Kubernetes headless
service names every pod), so each is asked on its own. Each replica is asked at once, its
health and its repository index in parallel, within one deadline; one that does not answer
in time, refuses the connection or fails is listed UNREACHABLE with the reason.

No transport here: a `ReplicaProbe` (the port) asks one replica; the gRPC adapter lives
in `modelhub.router.fleet_client`. The entries of a replica's index are the adapter's own
values, handed back untouched: this module reads only their model name and version.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar

from modelhub.common.errors import InvalidArgumentError, ModelHubError
from modelhub.common.names import bare_id, is_resource_id, version_number
from modelhub.router.settings import join_address, split_address


class IndexEntry(Protocol):
    """What this module reads of a replica's index entry."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


E = TypeVar("E", bound=IndexEntry)


class Health(enum.Enum):
    SERVING = "SERVING"
    # Answered, but not serving (starting: deployments still loading; or draining).
    NOT_SERVING = "NOT_SERVING"
    # No answer within the deadline, connection refused, or the calls failed.
    UNREACHABLE = "UNREACHABLE"


@dataclass(frozen=True, slots=True)
class ReplicaIndex(Generic[E]):
    """What one replica reports it holds."""

    entries: Sequence[E]
    devices: Sequence[str] = ()
    memory_used_bytes: int = 0
    memory_budget_bytes: int = 0
    server_version: str = ""


@dataclass(frozen=True, slots=True)
class Replica(Generic[E]):
    """One replica as the router found it."""

    address: str
    health: Health
    observe_time: float
    reason: str = ""
    index: ReplicaIndex[E] = field(default_factory=lambda: ReplicaIndex(()))


class ReplicaProbe(Protocol[E]):
    """Asks one replica (the port; errors are domain errors, `ModelHubError`)."""

    async def serving(self, address: str, timeout_s: float) -> bool:
        """Whether the replica's health check says SERVING."""
        ...

    async def index(self, address: str, timeout_s: float) -> ReplicaIndex[E]:
        """The replica's repository index."""
        ...


# host, port → the addresses ("ip:port") it stands for.
Resolver = Callable[[str, int], Awaitable[list[str]]]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def dns_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to: IPv4 ones when there are any (a name usually
    resolves to the same server over both families), else IPv6 ones."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = sorted({str(info[4][0]) for info in infos if info[0] == socket.AF_INET})
    v6 = sorted({str(info[4][0]) for info in infos if info[0] == socket.AF_INET6})
    return [join_address(ip, port) for ip in (v4 or v6)]


@dataclass(frozen=True, slots=True)
class Filter:
    """Which index entries to list (replicas are listed all the same)."""

    model: str = ""
    version: str = ""

    @classmethod
    def of(cls, model: str, version: str) -> Filter:
        """From the request: `models/{m}` or `m`, and a version number (with a model)."""
        given, model = model, bare_id(model)
        if given and not is_resource_id(model):
            raise InvalidArgumentError(
                f"model {given[:100]!r} is not a model: give `models/{{model}}` or the model id",
                field="model",
            )
        if version and not model:
            raise InvalidArgumentError("version needs a model", field="version")
        return cls(model, str(version_number(version, "version")) if version else "")

    def keeps(self, entry: IndexEntry) -> bool:
        return (not self.model or entry.name == self.model) and (
            not self.version or entry.version == self.version
        )


class Fleet(Generic[E]):
    """The replicas behind `addresses()` (the router's pools), asked on demand."""

    def __init__(
        self,
        addresses: Callable[[], Sequence[str]],
        probe: ReplicaProbe[E],
        *,
        timeout_s: float = 5.0,
        resolver: Resolver | None = dns_resolver,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`resolver`: None asks each configured address as it is (no DNS expansion: e.g.
        when TLS verifies the dialled name)."""
        self._addresses = addresses
        self._probe = probe
        self.timeout_s = timeout_s
        self._resolver = resolver
        self._clock = clock

    async def _expand(self, address: str) -> list[str] | str:
        """The addresses one configured address stands for, or why there are none."""
        if self._resolver is None:
            return [address]
        try:
            host, port = split_address(address)
        except InvalidArgumentError as exc:
            return exc.message
        if _is_ip(host):
            return [join_address(host, port)]
        try:
            found = await self._resolver(host, port)
        except OSError as exc:
            return f"cannot resolve {host!r}: {exc}"
        return found or f"{host!r} resolves to no address"

    async def _targets(self) -> list[tuple[str, str]]:
        """(address, "") to ask, or (configured address, why it cannot be asked)."""
        configured = list(dict.fromkeys(self._addresses()))
        expanded = await asyncio.gather(*(self._expand(a) for a in configured))
        targets: dict[str, str] = {}
        for address, found in zip(configured, expanded, strict=True):
            if isinstance(found, str):
                targets.setdefault(address, found)
            else:
                for one in found:
                    targets.setdefault(one, "")
        return list(targets.items())

    async def _ask(self, address: str, timeout_s: float, wanted: Filter) -> Replica[E]:
        observed = self._clock()
        serving, index = await asyncio.gather(
            self._probe.serving(address, timeout_s),
            self._probe.index(address, timeout_s),
            return_exceptions=True,
        )
        for answer in (serving, index):
            if isinstance(answer, ModelHubError):
                return Replica(address, Health.UNREACHABLE, observed, answer.message)
            if isinstance(answer, BaseException):
                raise answer
        if not isinstance(index, ReplicaIndex):  # (for the type checker: answers only)
            raise TypeError(f"a probe answered {type(index).__name__}, not a ReplicaIndex")
        kept = replace(index, entries=[e for e in index.entries if wanted.keeps(e)])
        if serving is True:
            return Replica(address, Health.SERVING, observed, "", kept)
        return Replica(
            address,
            Health.NOT_SERVING,
            observed,
            "its health check says NOT_SERVING (starting: deployed versions still loading; "
            "or draining before it stops)",
            kept,
        )

    async def replicas(
        self, model: str = "", version: str = "", deadline_s: float | None = None
    ) -> list[Replica[E]]:
        """Every replica, asked in parallel, in the order of the router's pools. The calls
        end within the fleet's timeout and before the caller's deadline (`deadline_s`, the
        time it has left), keeping a tenth of it to answer."""
        wanted = Filter.of(model, version)
        timeout = self.timeout_s
        if deadline_s is not None:
            timeout = max(0.01, min(timeout, deadline_s - max(0.05, deadline_s / 10)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        targets = await self._targets()
        left = max(0.01, deadline - loop.time())

        async def one(address: str, problem: str) -> Replica[E]:
            if problem:
                return Replica(address, Health.UNREACHABLE, self._clock(), problem)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    return await self._ask(address, left, wanted)
            return Replica(
                address,
                Health.UNREACHABLE,
                self._clock(),
                f"no answer within {timeout:.3g} s",
            )

        return list(await asyncio.gather(*(one(a, p) for a, p in targets)))
