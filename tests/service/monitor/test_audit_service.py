"""The audit log's RPCs on a real monitor server: inference feeds it with the publisher
role, reading it needs admin (payloads are sensitive), and bad requests get
INVALID_ARGUMENT or NOT_FOUND with a message, never INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.common.settings import AuthSettings
from modelhub.monitor.clock import ManualClock

from .conftest import start_service

NOW = 1_699_999_200.0


def _record(request_id: str, offset_s: float = 0.0) -> pb.AuditRecord:
    record = pb.AuditRecord(
        request_id=request_id,
        endpoint="endpoints/e",
        variant="a",
        model="models/m",
        version=1,
        caller="alice",
        caller_role="reader",
        time=Timestamp(seconds=int(NOW + offset_s)),
    )
    tensor = record.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    tensor.data.extend([0.5, 1.5])
    return record


def _who(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def test_feeding_needs_publisher_and_reading_needs_admin(database_url: str) -> None:
    service = await start_service(
        database_url, ManualClock(NOW), auth=AuthSettings(tokens="r:reader,p:publisher,a:admin")
    )
    try:
        stub = service.stub
        batch = pb.IngestAuditRecordsRequest(records=[_record("q1"), _record("q2", 1)])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.IngestAuditRecords(batch, metadata=_who("r"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        answer = await stub.IngestAuditRecords(batch, metadata=_who("p"))
        assert (answer.accepted, answer.rejected) == (2, 0)

        for token in ("r", "p"):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListAuditRecords(pb.ListAuditRecordsRequest(), metadata=_who(token))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "needs role admin" in (err.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetAuditRecord(
                    pb.GetAuditRecordRequest(request_id="q1"), metadata=_who(token)
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

        listed = await stub.ListAuditRecords(pb.ListAuditRecordsRequest(), metadata=_who("a"))
        assert [r.request_id for r in listed.records] == ["q2", "q1"]
        assert not listed.records[0].inputs  # BASIC view
        full = await stub.ListAuditRecords(
            pb.ListAuditRecordsRequest(view=pb.AUDIT_RECORD_VIEW_FULL), metadata=_who("a")
        )
        assert list(full.records[0].inputs[0].data) == [0.5, 1.5]
        record = await stub.GetAuditRecord(
            pb.GetAuditRecordRequest(request_id="q1"), metadata=_who("a")
        )
        assert (record.caller, list(record.inputs[0].shape)) == ("alice", [1, 2])
    finally:
        await service.close()


async def test_bad_requests_say_what_is_wrong(service) -> None:  # type: ignore[no-untyped-def]
    stub = service.stub
    answer = await stub.IngestAuditRecords(
        pb.IngestAuditRecordsRequest(records=[_record(""), _record("ok"), _record("late", -1e7)])
    )
    assert (answer.accepted, answer.rejected) == (1, 2)
    assert answer.reject_reasons[0].startswith("records[0].request_id")
    assert answer.reject_reasons[1].startswith("records[2].time: is older than the retention")

    cases = [
        pb.ListAuditRecordsRequest(page_size=-1),
        pb.ListAuditRecordsRequest(page_token="not-a-token"),
        pb.ListAuditRecordsRequest(endpoint="endpoints/Bad_Name"),
        pb.ListAuditRecordsRequest(
            start_time=Timestamp(seconds=int(NOW)), end_time=Timestamp(seconds=int(NOW) - 1)
        ),
    ]
    for request in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListAuditRecords(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetAuditRecord(pb.GetAuditRecordRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetAuditRecord(pb.GetAuditRecordRequest(request_id="missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no audit record of request 'missing'" in (err.value.details() or "")
