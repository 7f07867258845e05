"""Wire ↔ domain conversion: unknown fields, oneofs, round trips, update masks."""

from __future__ import annotations

import math

from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.api.common.v1 import types_pb2
from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.common.timestamps import timestamp_of
from modelhub.monitor import convert
from modelhub.monitor.profile import CATEGORICAL, NUMERIC


def _with_unknown_field(message: pb.InferenceEvent) -> pb.InferenceEvent:
    # Field 99 (varint 1) exists in no version of the schema.
    return pb.InferenceEvent.FromString(message.SerializeToString() + bytes([0x98, 0x06, 0x01]))


def test_event_conversion_and_unknown_fields() -> None:
    message = pb.InferenceEvent(
        model="models/fraud",
        version=2,
        latency_seconds=0.25,
        features=[pb.FeatureValue(name="x", number=1.5), pb.FeatureValue(name="c", category="a")],
        predictions=[pb.FeatureValue(name="p")],  # neither number nor category
    )
    message.time.FromSeconds(1_700_000_000)
    event, problems = convert.event_from_proto(message)
    assert (event.model, event.version, event.latency_s, event.time) == (
        "models/fraud", 2, 0.25, 1_700_000_000.0,
    )  # fmt: skip
    assert event.features == [("x", 1.5), ("c", "a")]
    assert event.source == "unknown"
    assert [p.field for p in problems] == ["predictions[0]"]
    # A newer sender's field is ignored; the known ones are read (and checked) as usual.
    newer, problems = convert.event_from_proto(_with_unknown_field(message))
    assert newer == event
    assert [p.field for p in problems] == ["predictions[0]"]


def test_profile_round_trip_and_unknown_kind() -> None:
    message = types_pb2.DataProfile(
        features=[
            types_pb2.FeatureProfile(
                name="x", kind=types_pb2.FeatureProfile.NUMERIC, bin_edges=[0, 1], counts=[5]
            ),
            types_pb2.FeatureProfile(
                name="c", kind=types_pb2.FeatureProfile.CATEGORICAL, categories=["a"], counts=[1]
            ),
        ],
        predictions=[types_pb2.FeatureProfile(name="p")],
    )
    profile = convert.profile_from_proto(message)
    assert [f.kind for f in profile.features] == [NUMERIC, CATEGORICAL]
    assert profile.predictions[0].kind == ""  # unspecified: validation refuses it
    assert convert.profile_to_proto(profile) == message


def test_rule_round_trip_and_update_paths() -> None:
    message = pb.AlertRule(
        name="rules/r",
        display_name="d",
        metric="error_rate",
        series=pb.SeriesKey(model="models/m", version=3),
        comparator=pb.AlertRule.LESS_OR_EQUAL,
        threshold=0.5,
        window_seconds=60,
        for_seconds=5,
        etag="abc",
    )
    rule = convert.rule_from_proto(message)
    assert rule.comparator is not None and rule.comparator.name == "LESS_OR_EQUAL"
    back = convert.rule_to_proto(rule)
    assert back.comparator == message.comparator and back.series == message.series
    assert convert.rule_from_proto(pb.AlertRule(comparator=9)).comparator is None
    implied = convert.update_paths(pb.UpdateAlertRuleRequest(rule=message))
    assert implied == [
        "display_name", "metric", "series", "comparator", "threshold", "window_seconds",
        "for_seconds",
    ]  # fmt: skip
    masked = pb.UpdateAlertRuleRequest(rule=message, update_mask=FieldMask(paths=["disabled"]))
    assert convert.update_paths(masked) == ["disabled"]


def test_timestamps() -> None:
    ts = timestamp_of(1_700_000_000.25)
    assert (ts.seconds, ts.nanos) == (1_700_000_000, 250_000_000)
    assert convert.to_epoch(ts) == 1_700_000_000.25
    assert timestamp_of(0.0).seconds == 0
    assert timestamp_of(math.nan).seconds == 0


def test_batch_conversion_ignores_unknown_fields_at_every_depth() -> None:
    good = pb.InferenceEvent(model="models/fraud", features=[pb.FeatureValue(name="x", number=1.0)])
    nested = pb.InferenceEvent(model="models/fraud")
    nested.features.append(
        pb.FeatureValue.FromString(
            pb.FeatureValue(name="x", number=2.0).SerializeToString() + bytes([0x98, 0x06, 0x01])
        )
    )
    unset = pb.InferenceEvent(model="models/fraud", features=[pb.FeatureValue(name="y")])
    wire = pb.IngestEventsRequest(
        events=[good, _with_unknown_field(pb.InferenceEvent(model="models/a")), nested, unset]
    ).SerializeToString()
    # Unknown fields on the batch itself, too.
    request = pb.IngestEventsRequest.FromString(wire + bytes([0x98, 0x06, 0x01]))
    events, problems = convert.events_from_proto(request)
    assert [e.model for e in events] == ["models/fraud", "models/a", "models/fraud", "models/fraud"]
    assert events[2].features == [("x", 2.0)]
    assert {i: [v.field for v in found] for i, found in problems.items()} == {3: ["features[0]"]}


def test_audit_records_with_unknown_fields_keep_them_in_the_payload() -> None:
    record = pb.AuditRecord(request_id="r1", model="models/fraud", version=1)
    newer = pb.AuditRecord.FromString(record.SerializeToString() + bytes([0x98, 0x06, 0x01]))
    entries, problems = convert.audit_entries_from_proto(
        pb.IngestAuditRecordsRequest(records=[newer])
    )
    assert problems == {}
    assert (entries[0].request_id, entries[0].model) == ("r1", "models/fraud")
    assert entries[0].payload == newer.SerializeToString()
