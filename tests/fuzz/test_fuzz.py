"""Property-based fuzzing (issue 11): tensor decoders, model names read from request
bytes (inference's routing headers, Envoy's routing filter through a real Envoy), resource
names, endpoint policies and the REST parser. Any input gets a status other than INTERNAL
(pure functions: only domain errors escape), accepted inputs are answered right, and every
server is still healthy afterwards.

200 derandomized examples per target here; `bench/fuzz.py` runs the same properties with
10,000 or more, and new random inputs each run.
"""

from __future__ import annotations

from collections import Counter

import pytest

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from tests.fuzz.harness import INFER, FrontDoorStack
from tests.fuzz.targets import TARGETS, Target, run_target, suite_settings

EXAMPLES = 200

pytestmark = pytest.mark.filterwarnings(
    # JSON numbers past FP16/FP32's range become inf, as numpy converts them.
    "ignore:overflow encountered in cast:RuntimeWarning"
)


def _explored(target: Target, seen: Counter[str]) -> None:
    assert sum(seen.values()) >= EXAMPLES, seen
    # Both inputs that were accepted (and answered right) and inputs that were refused:
    # the strategies get past the first check.
    assert seen["OK"] > 0 and len(seen) >= 2, (target.name, seen)


@pytest.mark.parametrize("target", TARGETS, ids=[t.slug for t in TARGETS])
def test_any_input_gets_a_clear_status(target: Target, request: pytest.FixtureRequest) -> None:
    stack = request.getfixturevalue(target.stack) if target.stack else None
    seen = run_target(target, stack, suite_settings(EXAMPLES))
    _explored(target, seen)
    if stack is not None:
        stack.assert_healthy()


@pytest.mark.parametrize("name", ["fz-header\n", "m\x01", "m\x7f"])
def test_a_model_name_with_control_characters_is_refused(
    front_door: FrontDoorStack, name: str
) -> None:
    request = pb.ModelInferRequest(model_name=name)
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(bytes(16))
    outcome, _ = front_door.call(INFER, request.SerializeToString())
    assert outcome.label == "INVALID_ARGUMENT", outcome
