"""An inference request and its result, in domain terms (numpy arrays, no protobuf)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class InputTensor:
    """One decoded input: `data` already has `shape` and the numpy dtype of `datatype`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass(slots=True)
class InferRequest:
    """A request for one model version.

    `version` is what the caller sent: empty (the default version), a number or an alias.
    `outputs` names the outputs wanted (empty: all). `priority` is 1 (highest) … n, 0 for
    the default level. `timeout_s` is the caller's own budget (e.g. the `timeout`
    parameter), on top of the transport deadline.
    """

    model: str
    version: str
    inputs: list[InputTensor]
    outputs: list[str]
    priority: int = 0
    timeout_s: float | None = None
    # A shadow copy nobody waits for: runs below every priority level.
    background: bool = False
    # Set once the request reached a version (for metrics labels when it then fails).
    served_version: int | None = None
    # The caller's request id where the protocol carries it in the body (REST).
    id: str = ""


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray


@dataclass(slots=True)
class InferResult:
    """The answer: which version served it, and the requested outputs in request order
    (or model order when all were requested)."""

    model: str
    version: int
    outputs: list[OutputTensor]
