"""The payload audit log, inference's part (docs/audit.md): which requests are recorded,
and their records.

Each endpoint's audit policy (sample rate, inputs to redact) comes from the registry's
Watch stream, which the deployment watcher follows anyway (`AuditPolicies`). For every
request Envoy routed through an endpoint, `RequestAuditor.sampled` decides with one dict
lookup and at most one random draw; a sampled request's record is built from what the
request already holds, within the record's size cap (`modelhub.common.audit.head`), and
queued on its own bounded pipeline: nothing on the request path waits for the monitor, and
records that do not fit are dropped and counted.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from modelhub.common.audit import (
    MAX_STATUS_MESSAGE,
    RECORD_OVERHEAD_BYTES,
    TENSOR_OVERHEAD_BYTES,
    AuditRecord,
    AuditTensor,
    head,
    value_wire_bytes,
    values_memory,
)
from modelhub.common.events import EventPipeline
from modelhub.inference.endpoints import EndpointTable
from modelhub.inference.request import InputTensor, OutputTensor
from modelhub.inference.routing import Route

# A guess of a string's length, to split the cap between inputs and outputs.
_STRING_GUESS = 16


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    """An endpoint's audit policy: the fraction of its requests recorded and the inputs
    whose values are never recorded."""

    sample_rate: float
    redact_inputs: frozenset[str] = frozenset()


class AuditPolicies(EndpointTable[AuditPolicy]):
    """Endpoint (`endpoints/{e}`) → its audit policy, kept in line with the registry by
    the deployment watcher. Only endpoints that record something are held."""

    def put(self, endpoint: str, policy: AuditPolicy | None) -> None:
        """The endpoint's policy changed (None or a zero rate: nothing is recorded)."""
        super().put(endpoint, policy if policy is not None and policy.sample_rate > 0 else None)


def _need(datatype: str, size: int) -> int:
    """Encoded bytes a whole tensor would take (strings guessed)."""
    if datatype == "BYTES":
        return size * (value_wire_bytes(datatype) + _STRING_GUESS)
    return size * value_wire_bytes(datatype)


class RequestAuditor:
    """Samples requests of audited endpoints and queues their records."""

    def __init__(
        self,
        pipeline: EventPipeline[AuditRecord],
        policies: AuditPolicies,
        *,
        max_record_bytes: int,
        rng: random.Random | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.policies = policies
        self.max_record_bytes = max_record_bytes
        self._random = (rng or random.Random()).random

    def sampled(self, route: Route) -> AuditPolicy | None:
        """The endpoint's policy when this request is to be recorded, else None. Shadow
        copies are never recorded (their primary is)."""
        if not route.endpoint or route.shadow:
            return None
        policy = self.policies.get(route.endpoint)
        if policy is None:
            return None
        if policy.sample_rate < 1.0 and self._random() >= policy.sample_rate:
            return None
        return policy

    def record(
        self,
        policy: AuditPolicy,
        route: Route,
        *,
        request_id: str,
        arrival: float,
        latency_s: float,
        model: str,
        version: int,
        status_code: int,
        status_message: str,
        caller: str,
        caller_role: str,
        trace_id: str,
        inputs: Sequence[InputTensor],
        outputs: Sequence[OutputTensor],
    ) -> None:
        """Build the record of a sampled request (bounded work: at most the cap's worth of
        values is copied) and queue it; never blocks."""
        redacted = policy.redact_inputs
        budget = (
            self.max_record_bytes
            - RECORD_OVERHEAD_BYTES
            - TENSOR_OVERHEAD_BYTES * (len(inputs) + len(outputs))
        )
        need_out = 0
        for output in outputs:
            need_out += _need(output.datatype, output.data.size)
        # Inputs get half the cap, and what the outputs do not need; the outputs get what
        # the inputs left (the record stays within the cap whatever the strings' lengths).
        budget_in = max(budget // 2, budget - need_out)
        record = AuditRecord(
            # A direct call without any id (Envoy always sets one) gets one of its own.
            request_id=request_id or route.request_id or uuid.uuid4().hex,
            time=arrival,
            endpoint=route.endpoint,
            variant=route.variant,
            model=model,
            version=version,
            status_code=status_code,
            status_message=status_message[:MAX_STATUS_MESSAGE],
            latency_s=latency_s,
            trace_id=trace_id,
            caller=caller,
            caller_role=caller_role,
        )
        truncated = False
        for tensor in inputs:
            if tensor.name in redacted:
                record.inputs.append(
                    AuditTensor(tensor.name, tensor.datatype, tuple(tensor.shape), None, True)
                )
                continue
            values, cut, used = head(tensor.data, budget_in)
            budget_in -= used
            budget -= used
            truncated |= cut
            record.inputs.append(
                AuditTensor(
                    tensor.name,
                    tensor.datatype,
                    tuple(tensor.shape),
                    values,
                    truncated=cut,
                    memory=values_memory(values, used),
                )
            )
        for output in outputs:
            values, cut, used = head(output.data, budget)
            budget -= used
            truncated |= cut
            record.outputs.append(
                AuditTensor(
                    output.name,
                    output.datatype,
                    output.data.shape,
                    values,
                    truncated=cut,
                    memory=values_memory(values, used),
                )
            )
        record.truncated = truncated
        self.pipeline.emit(record)
