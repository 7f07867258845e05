"""The router's RecordOutcome decisions, in the domain (modelhub.router.outcomes): invalid
outcomes are refused before anything is sent, a router without a monitor says so
(FAILED_PRECONDITION, NO_MONITOR), and what the monitor made of each outcome is counted."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from modelhub.common.errors import FailedPreconditionError, InvalidArgumentError
from modelhub.common.events import Outcome
from modelhub.common.status import status_code_for
from modelhub.router.outcomes import OutcomeForwarder


async def test_forwards_validates_and_counts() -> None:
    sent: list[Outcome] = []

    async def send(outcomes: Sequence[Outcome]) -> int:
        sent.extend(outcomes)
        return int(outcomes[0].request_id == "known")

    forwarder = OutcomeForwarder(send)
    assert await forwarder.record("known", 1.0, "") is True
    assert await forwarder.record("unknown", 0.0, "label") is False
    assert [(o.request_id, o.kind) for o in sent] == [("known", "conversion"), ("unknown", "label")]
    assert (forwarder.counts.attributed, forwarder.counts.unattributed) == (1, 1)

    for request_id, value, kind in (("", 1.0, ""), ("r", float("nan"), ""), ("r", 1.0, "x")):
        with pytest.raises(InvalidArgumentError):
            await forwarder.record(request_id, value, kind)
    assert len(sent) == 2


async def test_without_a_monitor_the_answer_says_where_to_send_outcomes() -> None:
    forwarder = OutcomeForwarder(None)
    with pytest.raises(FailedPreconditionError) as raised:
        await forwarder.record("r", 1.0, "")
    assert raised.value.reason == "NO_MONITOR"
    assert "MODELHUB_ROUTER_MONITOR_ADDRESS" in raised.value.message
    assert status_code_for(type(raised.value)).name == "FAILED_PRECONDITION"  # type: ignore[union-attr]
    with pytest.raises(InvalidArgumentError):  # still validated first
        await forwarder.record("", 1.0, "")
