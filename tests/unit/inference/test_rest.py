"""The REST infer body parser (modelhub.inference.rest): regressions found by fuzzing
(tests/fuzz) — each of these inputs made the parser raise something other than a domain
error (the REST servicer answered INTERNAL)."""

from __future__ import annotations

import json

import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.inference import rest

LIMIT = 64 * 1024


@pytest.mark.parametrize("header_length", ["²", "١٢", "9" * 5000, "-1", " ", "0x10"])
def test_a_header_length_that_is_not_ascii_digits_is_invalid(header_length: str) -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})
    with pytest.raises(InvalidArgumentError) as info:
        rest.parse_infer(body.encode(), header_length, "m", "", LIMIT)
    assert info.value.violations[0].field == rest.HEADER_LENGTH


def test_a_bytes_tensor_with_more_than_32_dimensions() -> None:
    # numpy's flat iterator stops at 32 dimensions; shapes may have up to 64.
    shape = [1] * 60
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "BYTES", "shape": shape, "data": ["a"]}]}
    )
    call = rest.parse_infer(body.encode(), None, "m", "", LIMIT)
    (tensor,) = call.request.inputs
    assert tensor.data.shape == tuple(shape)
    assert tensor.data.reshape(-1).tolist() == [b"a"]
