"""The fleet's domain logic (modelhub.router.fleet) without a network: a DNS name stands
for every address it resolves to (a headless service), addresses are asked once each, in
pool order, within one deadline, and each failure is listed with its reason. The real
gRPC adapter and servers: tests/service/router/test_fleet.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from modelhub.common.errors import InvalidArgumentError, UnavailableError
from modelhub.router.fleet import Fleet, Health, ReplicaIndex
from modelhub.router.settings import split_address


@dataclass(frozen=True)
class Entry:
    name: str
    version: str


class Probe:
    """Answers from a table: address → (serving, entries), an error, or a hang."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def serving(self, address: str, timeout_s: float) -> bool:
        self.asked.append(address)
        answer = self.answers[address]
        if answer == "hang":
            await asyncio.sleep(3600)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, tuple)
        return bool(answer[0])

    async def index(self, address: str, timeout_s: float) -> ReplicaIndex[Entry]:
        answer = self.answers[address]
        if answer == "hang":
            await asyncio.sleep(3600)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, tuple)
        return ReplicaIndex(answer[1], ["cpu"], 10, 100, "1.0")


async def resolve(host: str, port: int) -> list[str]:
    table = {"inference-headless": ["10.0.0.2", "10.0.0.1", "10.0.0.3"], "one": ["10.0.0.1"]}
    if host not in table:
        raise OSError(f"[Errno -2] Name or service not known: {host}")
    return [f"{ip}:{port}" for ip in table[host]]


async def test_names_expand_to_every_address_once_in_pool_order() -> None:
    entries = [Entry("m", "1"), Entry("m", "2"), Entry("n", "1")]
    probe = Probe(
        {
            "10.0.0.1:50052": (True, entries),
            "10.0.0.2:50052": (False, entries[:1]),
            "10.0.0.3:50052": UnavailableError("RepositoryIndex on 10.0.0.3:50052: refused"),
            "[fd00::1]:50052": (True, []),
        }
    )
    pools = ["inference-headless:50052", "one:50052", "[fd00::1]:50052", "nowhere:1", "junk"]
    fleet = Fleet(lambda: pools, probe, timeout_s=1.0, resolver=resolve)
    replicas = await fleet.replicas()
    assert [(r.address, r.health) for r in replicas] == [
        ("10.0.0.2:50052", Health.NOT_SERVING),
        ("10.0.0.1:50052", Health.SERVING),
        ("10.0.0.3:50052", Health.UNREACHABLE),
        ("[fd00::1]:50052", Health.SERVING),
        ("nowhere:1", Health.UNREACHABLE),
        ("junk", Health.UNREACHABLE),
    ]
    assert sorted(set(probe.asked)) == sorted(probe.answers)  # each asked, once
    assert len(probe.asked) == 4
    by = {r.address: r for r in replicas}
    assert "NOT_SERVING" in by["10.0.0.2:50052"].reason
    assert by["10.0.0.3:50052"].reason.endswith("refused")
    assert "cannot resolve 'nowhere'" in by["nowhere:1"].reason
    assert "not host:port" in by["junk"].reason
    assert by["10.0.0.1:50052"].index.memory_budget_bytes == 100

    only = await fleet.replicas("models/m", "2")
    assert [len(r.index.entries) for r in only] == [0, 1, 0, 0, 0, 0]
    model = await fleet.replicas("m")
    assert [list(r.index.entries) for r in model][:2] == [entries[:1], entries[:2]]


async def test_without_a_resolver_addresses_are_asked_as_configured() -> None:
    probe = Probe({"inference-headless:50052": (True, [])})
    fleet = Fleet(lambda: ["inference-headless:50052"], probe, resolver=None)
    (replica,) = await fleet.replicas()
    assert (replica.address, replica.health) == ("inference-headless:50052", Health.SERVING)


async def test_a_hung_replica_costs_the_deadline_and_no_more() -> None:
    probe = Probe({"10.0.0.1:1": "hang", "10.0.0.2:1": (True, [])})
    fleet = Fleet(lambda: ["10.0.0.1:1", "10.0.0.2:1"], probe, timeout_s=30.0, resolver=resolve)
    loop = asyncio.get_running_loop()
    began = loop.time()
    hung, fine = await fleet.replicas(deadline_s=0.5)
    assert loop.time() - began < 0.5
    assert hung.health == Health.UNREACHABLE and "no answer within" in hung.reason
    assert fine.health == Health.SERVING


@pytest.mark.parametrize(
    ("model", "version", "field"),
    [("", "1", "version"), ("Bad!", "", "model"), ("models/", "", "model"), ("m", "x", "version")],
)
async def test_filters_are_checked(model: str, version: str, field: str) -> None:
    fleet = Fleet(lambda: [], Probe({}), resolver=resolve)
    with pytest.raises(InvalidArgumentError) as raised:
        await fleet.replicas(model, version)
    assert raised.value.violations[0].field == field


def test_split_address() -> None:
    assert split_address("a:1") == ("a", 1)
    assert split_address("[::1]:50052") == ("::1", 50052)
    for bad in ("a", ":1", "a:0", "a:x", "a:70000"):
        with pytest.raises(InvalidArgumentError):
            split_address(bad)
