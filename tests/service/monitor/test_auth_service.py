"""Roles: reads need READER, feeding and configuring PUBLISHER, deletes ADMIN."""

from __future__ import annotations

import grpc
import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.common.auth import Role
from modelhub.common.settings import AuthSettings
from modelhub.monitor.api import ROLES
from modelhub.monitor.clock import ManualClock

from .conftest import start_service
from .helpers import inference_event

RULE = pb.AlertRule(
    display_name="errors",
    metric="error_rate",
    comparator=pb.AlertRule.GREATER_THAN,
    threshold=0.5,
)


def test_every_rpc_has_a_deliberate_role() -> None:
    methods = set(pb.DESCRIPTOR.services_by_name["MonitorService"].methods_by_name)
    assert set(ROLES) == methods
    assert ROLES["DeleteAlertRule"] is Role.ADMIN
    assert ROLES["IngestEvents"] is Role.PUBLISHER and ROLES["GetStats"] is Role.READER


async def test_roles_are_enforced(database_url: str) -> None:
    service = await start_service(
        database_url,
        ManualClock(),
        auth=AuthSettings(tokens="r:reader,p:publisher,a:admin"),
    )

    def who(token: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token}")]

    try:
        stub = service.stub
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetStats(pb.GetStatsRequest())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await stub.GetStats(pb.GetStatsRequest(), metadata=who("r"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateAlertRule(
                pb.CreateAlertRuleRequest(rule_id="x", rule=RULE), metadata=who("r")
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await stub.CreateAlertRule(
            pb.CreateAlertRuleRequest(rule_id="x", rule=RULE), metadata=who("p")
        )

        async def batch():  # type: ignore[no-untyped-def]
            yield pb.IngestEventsRequest(events=[inference_event()])

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.IngestEvents(batch(), metadata=who("r"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (await stub.IngestEvents(batch(), metadata=who("p"))).accepted == 1
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.DeleteAlertRule(pb.DeleteAlertRuleRequest(name="rules/x"), metadata=who("p"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await stub.DeleteAlertRule(pb.DeleteAlertRuleRequest(name="rules/x"), metadata=who("a"))
        stream = stub.WatchAlerts(pb.WatchAlertsRequest(), metadata=who("nobody"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await service.close()
