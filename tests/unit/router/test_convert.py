"""Registry watch events become state changes; events, tensors and samples convert
faithfully."""

from __future__ import annotations

import numpy as np

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.router import convert
from modelhub.router.events import Comparison, Event
from modelhub.router.table import KeySource, RegistryState, Selector, StickyKey

PUT, DELETE = rpb.WatchEvent.PUT, rpb.WatchEvent.DELETE


def test_apply_events_of_every_kind() -> None:
    state = RegistryState()
    events = [
        rpb.WatchEvent(type=PUT, revision=1, kind=rpb.MODEL, name="models/m", model=rpb.Model()),
        rpb.WatchEvent(
            type=PUT,
            revision=2,
            kind=rpb.MODEL_VERSION,
            name="models/m/versions/1",
            version=rpb.ModelVersion(version=1, status=rpb.ModelVersion.READY),
        ),
        rpb.WatchEvent(
            type=PUT,
            revision=3,
            kind=rpb.MODEL_VERSION,
            name="models/m/versions/2",
            version=rpb.ModelVersion(version=2, status=rpb.ModelVersion.ARCHIVED),
        ),
        rpb.WatchEvent(
            type=PUT,
            revision=4,
            kind=rpb.ALIAS,
            name="models/m/aliases/champion",
            alias=rpb.Alias(alias="champion", version=1),
        ),
        rpb.WatchEvent(
            type=PUT,
            revision=5,
            kind=rpb.ENDPOINT,
            name="endpoints/e",
            endpoint=rpb.Endpoint(
                name="endpoints/e",
                salt="s",
                sticky_key=rpb.StickyKey(source=rpb.StickyKey.METADATA, name="X-User-Id"),
                variants=[
                    rpb.Variant(
                        name="a",
                        model="models/m",
                        selector=rpb.VersionSelector(alias="champion"),
                        weight=90,
                        pool=["h:1"],
                    ),
                    rpb.Variant(name="b", model="models/m", weight=10),
                ],
                shadows=[
                    rpb.Shadow(
                        name="s",
                        model="models/m",
                        selector=rpb.VersionSelector(version=1),
                        sample_rate=0.5,
                    )
                ],
                fallback="a",
            ),
        ),
        rpb.WatchEvent(
            type=PUT,
            revision=6,
            kind=rpb.DEPLOYMENT,
            name="deployments/d",
            deployment=rpb.Deployment(name="deployments/d", model="models/m"),
        ),
    ]
    assert all(convert.apply_event(state, e) for e in events)
    assert state.versions == {"m": {1: True, 2: False}}
    assert state.aliases == {"m": {"champion": 1}}
    endpoint = state.endpoints["e"]
    # Metadata keys are lowercase on the wire.
    assert endpoint.sticky_key == StickyKey(KeySource.METADATA, "x-user-id")
    assert [v.selector for v in endpoint.variants] == [Selector(alias="champion"), Selector()]
    assert endpoint.variants[0].pool == ("h:1",)
    assert endpoint.shadows[0].sample_rate == 0.5 and endpoint.fallback == "a"
    assert state.deployments["d"].selectors == (Selector(),)

    deletes = [
        rpb.WatchEvent(type=DELETE, kind=rpb.ALIAS, name="models/m/aliases/champion"),
        rpb.WatchEvent(type=DELETE, kind=rpb.MODEL_VERSION, name="models/m/versions/1"),
        rpb.WatchEvent(type=DELETE, kind=rpb.ENDPOINT, name="endpoints/e"),
        rpb.WatchEvent(type=DELETE, kind=rpb.DEPLOYMENT, name="deployments/d"),
    ]
    assert all(convert.apply_event(state, e) for e in deletes)
    assert state.aliases == {"m": {}} and state.versions == {"m": {2: False}}
    assert not state.endpoints and not state.deployments
    progress = rpb.WatchEvent(type=rpb.WatchEvent.PROGRESS, revision=9)
    assert not convert.apply_event(state, progress)


def test_event_to_monitor_message() -> None:
    event = Event(
        "r1",
        1_700_000_000.25,
        "endpoints/e",
        "b",
        "m",
        2,
        latency_s=0.003,
        status_code=0,
        key_hash="abcd",
        rows=1,
        features=[("input[0]", 1.0), ("input[1]", float("nan"))],
        predictions=[("output[0]", 2.0)],
        shadows=[Comparison("s", "m", 3, 0, 0.004, 0.5, True, True)],
    )
    message = convert.events_to_pb([event]).events[0]
    assert message.model == "models/m" and message.version == 2 and message.source == "router"
    assert message.time.ToNanoseconds() == 1_700_000_000_250_000_000
    assert [f.name for f in message.features] == ["input[0]"]  # NaN left out
    assert message.shadows[0] == mpb.ShadowComparison(
        shadow="s",
        model="models/m",
        version=3,
        status_code=0,
        latency_seconds=0.004,
        max_abs_diff=0.5,
        argmax_agree=True,
        has_argmax=True,
    )


def test_response_tensors_raw_and_typed() -> None:
    response = opb.ModelInferResponse()
    response.outputs.add(name="raw", datatype="FP32", shape=[2, 2])
    response.raw_output_contents.append(np.arange(4, dtype=np.float32).tobytes())
    tensors = convert.response_tensors(response.SerializeToString())
    assert tensors["raw"].tolist() == [[0.0, 1.0], [2.0, 3.0]]
    typed = opb.ModelInferResponse()
    out = typed.outputs.add(name="label", datatype="INT64", shape=[3])
    out.contents.int64_contents.extend([1, 2, 3])
    assert convert.response_tensors(typed.SerializeToString())["label"].tolist() == [1, 2, 3]
    wrong = opb.ModelInferResponse()
    wrong.outputs.add(name="bad", datatype="FP32", shape=[5])
    wrong.raw_output_contents.append(b"\0" * 8)
    assert convert.response_tensors(wrong.SerializeToString()) == {}


def test_sampler_takes_first_rows() -> None:
    request = opb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[3, 2])
    request.raw_input_contents.append(np.arange(6, dtype=np.float32).tobytes())
    response = opb.ModelInferResponse()
    response.outputs.add(name="y", datatype="FP32", shape=[3, 2])
    response.raw_output_contents.append((np.arange(6, dtype=np.float32) + 10).tobytes())
    sample = convert.make_sampler(max_values=1)
    rows, features, predictions = sample(request.SerializeToString(), response.SerializeToString())
    assert rows == 3
    assert features == [("input[0]", 0.0)]
    assert predictions == [("output[0]", 10.0)]
