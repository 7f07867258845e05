"""Hypothesis strategies for the fuzz targets (tests/fuzz, bench/fuzz.py).

Each strategy mixes well-formed inputs (so that fuzzing reaches past the first check),
well-formed inputs with one thing broken, and arbitrary values/bytes.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.oip import rest_pb2
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.common.dtypes import OIP_TO_NUMPY, TYPED_CONTENTS_FIELD
from modelhub.common.names import RESOURCE_ID
from modelhub.inference import routing

# ------------------------------------------------------------------------ shared pieces

DATATYPES = sorted(OIP_TO_NUMPY)
# Printable ASCII: what a gRPC client may send as a metadata value.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
# Strings that trip number and name parsing: non-ASCII digits, signs, padding, huge values.
TRICKY = [
    "",
    " ",
    "0",
    "1",
    "01",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1\n",
    "\n",
    "²",
    "١٢",
    "1_000",
    "0x10",
    "1e3",
    "9" * 19,
    "9" * 4400,
    "nan",
    "latest",
    "champion",
    "a" * 63,
    "a" * 64,
    "A",
    "K",  # Kelvin sign: lowercases to "k"
    "ſ",
    "a-",
    "-a",
    "a\x00",
    "a/b",
    "a@b",
    "é" * 3000,  # echoed in an error message: must still fit in the client's trailers
]
tricky = st.sampled_from(TRICKY)
ids = st.from_regex(RESOURCE_ID, fullmatch=True)
# An identifier, a near miss, or anything.
names = st.one_of(
    ids,
    ids.map(lambda s: s + "\n"),
    ids.map(str.upper),
    tricky,
    st.text(max_size=70),
)


def _rarely(draw: st.DrawFn, n: int) -> bool:
    """True about once in `n` draws: on the largest value, as Hypothesis favours small ones
    (and shrinks towards them, so a failure shrinks towards the common case)."""
    return draw(st.integers(0, n - 1)) == n - 1


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=10),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=8), children, max_size=4),
        ),
        max_leaves=12,
    )


json_values = _json_values()

# ------------------------------------------------------------------- tensor payloads

# Inputs of the inference stack's models (tests/fuzz/harness.py): name, datatype, width.
SCHEMAS: dict[str, list[tuple[str, str, int]]] = {
    "add": [("x", "FP32", 4)],
    "strings": [("x", "BYTES", 2)],
    "two": [("a", "INT64", 2), ("b", "INT64", 2), ("scores", "FP64", 3)],
    "small": [("x", "INT8", 3)],
    "half": [("x", "FP16", 3)],
    "flags": [("x", "BOOL", 3)],
}
MODEL_NAMES = [*SCHEMAS, "models/add", "endpoints/add", "", "nope", "models/", "add:1", "é" * 3000]
VERSIONS = ["", "1", "2", "3", "0", "latest"]
DIMS = st.one_of(
    st.integers(0, 9),
    st.sampled_from([-1, -(2**63), 2**31, 2**32 + 1, 2**62, 2**63 - 1, 10**9]),
)
# Large payloads are generated from a seed, not drawn byte by byte.
MAX_DRAWN_ELEMENTS = 64
MAX_SEEDED_BYTES = 96 * 1024


def encode_bytes_elements(items: list[bytes], lengths: list[int] | None = None) -> bytes:
    """Length-prefixed BYTES elements (`lengths` overrides the prefixes)."""
    parts = []
    for index, item in enumerate(items):
        length = len(item) if lengths is None else lengths[index]
        parts.append(struct.pack("<I", length & 0xFFFFFFFF))
        parts.append(item)
    return b"".join(parts)


def _count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= max(dim, 0)
    return count


@st.composite
def shapes(draw: st.DrawFn, width: int | None) -> list[int]:
    """[batch, width] mostly; otherwise any dims (negative, huge, too many)."""
    if width is not None and not _rarely(draw, 4):
        return [_mostly(draw, st.integers(1, 8), st.integers(0, 12)), width]
    if _rarely(draw, 10):
        return [1] * draw(st.integers(60, 70))
    return draw(st.lists(DIMS, max_size=5))


@st.composite
def raw_payloads(draw: st.DrawFn, datatype: str, shape: list[int]) -> bytes:
    """The raw bytes of one tensor: consistent with its shape, or not."""
    count = _count(shape)
    dtype = OIP_TO_NUMPY.get(datatype)
    choice = draw(st.integers(0, 9))
    if choice == 9:
        return draw(st.binary(max_size=64))
    if datatype == "BYTES":
        if count > MAX_DRAWN_ELEMENTS:
            return draw(st.binary(max_size=64))
        items = draw(st.lists(st.binary(max_size=6), min_size=count, max_size=count))
        lengths = None
        if choice == 8 and items:
            lengths = [len(i) for i in items]
            lengths[draw(st.integers(0, len(items) - 1))] = draw(
                st.sampled_from([0, 1, 7, 2**31, 2**32 - 1])
            )
        data = encode_bytes_elements(items, lengths)
        if choice == 7:
            data += draw(st.binary(min_size=1, max_size=5))
        return data
    itemsize = dtype.itemsize if dtype is not None else 4
    size = count * itemsize
    if choice == 8:
        size += draw(st.sampled_from([-itemsize, -1, 1, itemsize]))
    if size < 0 or size > MAX_SEEDED_BYTES:
        return draw(st.binary(max_size=64))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    if datatype == "BOOL" and choice < 6:
        return rng.integers(0, 2, size, dtype=np.uint8).tobytes()
    return rng.bytes(size)


_TYPED_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=6),
}


@st.composite
def typed_contents(draw: st.DrawFn, datatype: str, shape: list[int]) -> pb.InferTensorContents:
    contents = pb.InferTensorContents()
    own = TYPED_CONTENTS_FIELD.get(datatype)
    fields = [own] if own is not None and not _rarely(draw, 6) else []
    if not fields:
        fields = draw(st.lists(st.sampled_from(sorted(_TYPED_VALUES)), max_size=2, unique=True))
    count = _count(shape)
    for name in fields:
        values = _TYPED_VALUES[name]
        if (
            datatype in ("INT8", "UINT8", "INT16", "UINT16")
            and name == own
            and not _rarely(draw, 4)
        ):
            info = np.iinfo(OIP_TO_NUMPY[datatype])  # else values that do not fit
            values = st.integers(int(info.min), int(info.max))
        size = count if count <= MAX_DRAWN_ELEMENTS and not _rarely(draw, 5) else None
        if size is None:
            items = draw(st.lists(values, max_size=8))
        else:
            items = draw(st.lists(values, min_size=size, max_size=size))
        getattr(contents, name).extend(items)
    return contents


@dataclass
class InferExample:
    """A ModelInfer call: the message (or raw bytes standing for it) and metadata."""

    request: pb.ModelInferRequest
    payload: bytes
    metadata: list[tuple[str, str]] = field(default_factory=list)
    mutated: bool = False


OUTPUTS = {model: ["z", "label"] if model == "two" else ["y"] for model in SCHEMAS}
# Parameters a client sends: a priority level, a timeout in microseconds.
GOOD_PARAMETERS = {
    "priority": st.integers(0, 1).map(lambda n: pb.InferParameter(int64_param=n)),
    "timeout": st.integers(10**6, 10**8).map(lambda n: pb.InferParameter(int64_param=n)),
    "other": st.text(max_size=5).map(lambda t: pb.InferParameter(string_param=t)),
}


def _parameter(draw: st.DrawFn) -> pb.InferParameter:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return pb.InferParameter(bool_param=draw(st.booleans()))
    if kind == 1:
        return pb.InferParameter(int64_param=draw(st.integers(-(2**63), 2**63 - 1)))
    if kind == 2:
        return pb.InferParameter(string_param=draw(st.one_of(tricky, st.text(max_size=12))))
    if kind == 3:
        return pb.InferParameter(double_param=draw(st.floats()))
    return pb.InferParameter(uint64_param=draw(st.integers(0, 2**64 - 1)))


PARAMETER_NAMES = st.one_of(
    st.sampled_from(["priority", "timeout", "user", "binary_data_output", "modelhub.variant"]),
    st.text(max_size=10),
)


@st.composite
def infer_messages(draw: st.DrawFn) -> pb.ModelInferRequest:
    """ModelInferRequests for the inference stack's models, raw or typed contents."""
    model = draw(st.sampled_from(sorted(SCHEMAS)))
    request = pb.ModelInferRequest(
        model_name=_mostly(
            draw,
            st.sampled_from([model, f"models/{model}"]),
            st.one_of(st.sampled_from(MODEL_NAMES), st.text(max_size=20)),
        ),
        model_version=_mostly(
            draw,
            st.sampled_from(["", "1"]),
            st.one_of(st.sampled_from(VERSIONS), tricky, st.text(max_size=6)),
        ),
        id=draw(st.text(max_size=12)),
    )
    specs: list[tuple[str, str, int | None]] = list(SCHEMAS[model])
    if _rarely(draw, 8):  # other inputs: missing, extra, renamed, retyped
        specs = draw(
            st.lists(
                st.tuples(
                    st.one_of(
                        st.sampled_from(["x", "a", "b", "scores", "y", ""]), st.text(max_size=5)
                    ),
                    st.one_of(
                        st.sampled_from(DATATYPES), st.sampled_from(["", "FLOAT", "fp32", "BF16"])
                    ),
                    st.one_of(st.none(), st.integers(1, 4)),
                ),
                max_size=4,
            )
        )
    # FP16 has no typed contents field: raw, mostly.
    raw = draw(st.booleans()) or (any(d == "FP16" for _, d, _ in specs) and not _rarely(draw, 8))
    for name, datatype, width in specs:
        shape = draw(shapes(width))
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            request.raw_input_contents.append(draw(raw_payloads(datatype, shape)))
            if _rarely(draw, 20):  # typed contents as well: not allowed
                tensor.contents.CopyFrom(draw(typed_contents(datatype, shape)))
        else:
            tensor.contents.CopyFrom(draw(typed_contents(datatype, shape)))
        if _rarely(draw, 10):
            tensor.parameters[draw(PARAMETER_NAMES)].CopyFrom(_parameter(draw))
    if raw and _rarely(draw, 10):  # one entry more or fewer than inputs
        fewer: bool = draw(st.booleans())
        if request.raw_input_contents and fewer:
            del request.raw_input_contents[-1]
        else:
            request.raw_input_contents.append(draw(st.binary(max_size=8)))
    outputs = _mostly(
        draw,
        st.lists(st.sampled_from(OUTPUTS[model]), max_size=2, unique=True),
        st.lists(st.one_of(st.sampled_from(["y", "z", "label"]), st.text(max_size=5)), max_size=3),
    )
    for name in outputs:
        request.outputs.add(name=name)
    for name in draw(st.lists(st.sampled_from(sorted(GOOD_PARAMETERS)), max_size=2, unique=True)):
        request.parameters[name].CopyFrom(draw(GOOD_PARAMETERS[name]))
    if _rarely(draw, 6):
        request.parameters[draw(PARAMETER_NAMES)].CopyFrom(_parameter(draw))
    return request


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` truncated, with a byte flipped, bytes inserted, or a stray field appended."""
    op = draw(st.integers(0, 3))
    position = draw(st.integers(0, len(data)))
    if op == 0:
        return data[:position]
    if op == 1 and data:
        position = min(position, len(data) - 1)
        return (
            data[:position]
            + bytes([data[position] ^ draw(st.integers(1, 255))])
            + data[position + 1 :]
        )
    if op == 2:
        return data[:position] + draw(st.binary(min_size=1, max_size=8)) + data[position:]
    return data + draw(protobuf_fields())


@st.composite
def protobuf_fields(draw: st.DrawFn) -> bytes:
    """Protobuf-shaped bytes: fields of any number and wire type (including the invalid
    wire types 6 and 7 and groups), with payloads that may not fit."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 6))):
        number = draw(st.one_of(st.integers(1, 12), st.integers(0, 2**29)))
        wire = draw(st.integers(0, 7))
        out += _varint(number << 3 | wire)
        if wire == 0:
            out += _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire == 2:
            payload = draw(st.one_of(st.binary(max_size=16), protobuf_fields()))
            declared = draw(st.one_of(st.just(len(payload)), st.integers(0, 2**35)))
            out += _varint(declared) + payload
        elif wire == 5:
            out += draw(st.binary(min_size=4, max_size=4))
    if _rarely(draw, 10):
        out += b"\xff" * draw(st.integers(1, 11))  # a varint that never ends
    return bytes(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


ROUTING_VALUES: dict[str, st.SearchStrategy[str]] = {
    routing.HEADER_TARGET: st.sampled_from(
        ["add:1", "models/add:2", "add:", ":1", "add", "small:latest"]
    ),
    routing.HEADER_FALLBACK: st.sampled_from(["a=add:1", "a=add", "=add:1", "a=", "a"]),
    routing.HEADER_ATTEMPT: st.sampled_from(["1", "2", "3", "0", "x", "9" * 30]),
    routing.HEADER_MIRRORED: st.sampled_from(["1", "s=add:1", "s=add:1,t=add:x,,=", "true"]),
    routing.HEADER_SHADOW: st.sampled_from(["1", "0", "true", "no"]),
}


@st.composite
def routing_metadata(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Headers Envoy sets (here sent by a direct caller): sensible values, or anything."""
    headers = draw(st.lists(st.sampled_from(sorted(routing.HEADERS)), max_size=4, unique=True))
    return [
        (name, draw(st.one_of(ROUTING_VALUES.get(name, HEADER_TEXT), HEADER_TEXT)))
        for name in headers
    ]


@st.composite
def infer_examples(draw: st.DrawFn) -> InferExample:
    request = draw(infer_messages())
    payload = request.SerializeToString()
    mutate = _rarely(draw, 6)
    if mutate:
        payload = draw(st.one_of(mutated(payload), st.binary(max_size=64), protobuf_fields()))
    metadata = draw(routing_metadata()) if _rarely(draw, 5) else []
    return InferExample(request, payload, metadata, mutate)


# ------------------------------------------------------------------ routing headers


@dataclass
class RouteExample:
    headers: dict[str, str]
    name: str
    version: str
    sequence: int


@st.composite
def route_examples(draw: st.DrawFn) -> RouteExample:
    headers = {
        name: draw(
            st.one_of(ROUTING_VALUES.get(name, st.text(max_size=20)), tricky, st.text(max_size=300))
        )
        for name in draw(
            st.lists(st.sampled_from(sorted(routing.HEADERS)), max_size=6, unique=True)
        )
    }
    return RouteExample(
        headers,
        draw(st.one_of(st.sampled_from(MODEL_NAMES), tricky, st.text(max_size=30))),
        draw(st.one_of(st.sampled_from(VERSIONS), tricky, st.text(max_size=10))),
        draw(st.integers(0, 2**63)),
    )


# ------------------------------------------------------------------- front door (Envoy)

OIP_METHODS = ["ModelInfer", "ModelReady", "ModelMetadata", "ModelConfig"]
FRONT_NAMES = [
    "fz-header",
    "endpoints/fz-header",
    "fz-param",
    "endpoints/fz-param",
    "m",
    "models/m",
    "nope",
    "endpoints/nope",
    "",
]


@dataclass
class FrontDoorExample:
    method: str
    payload: bytes
    metadata: list[tuple[str, str]]
    gzip: bool = False


@st.composite
def front_door_messages(draw: st.DrawFn) -> bytes:
    """A ModelInferRequest for the front door's endpoints and model, as bytes: its name
    and version may hold any bytes (invalid UTF-8, control characters, NUL)."""
    name = draw(
        st.one_of(
            st.sampled_from(FRONT_NAMES).map(str.encode),
            st.binary(max_size=40),
            st.text(max_size=20).map(str.encode),
            st.sampled_from(
                [b"fz-header\n", b"fz\x00header", b"x" * 513, b"models/\xff", b"endpoints/"]
            ),
        )
    )
    x = np.ones((1, 4), np.float32)
    request = pb.ModelInferRequest(id=draw(st.text(max_size=8)))
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(x.tobytes())
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.one_of(st.just("user"), st.text(max_size=6)))
        request.parameters[key].CopyFrom(_parameter(draw))
    rest = request.SerializeToString()
    out = b"\x0a" + _varint(len(name)) + name
    if draw(st.booleans()):
        version = draw(
            st.one_of(st.sampled_from([b"", b"1", b"3", b"9", b"champion"]), st.binary(max_size=10))
        )
        out += b"\x12" + _varint(len(version)) + version
    # The fields in any order: the name may come after the tensors, or twice.
    if _rarely(draw, 5):
        out = rest + out
    else:
        out += rest
    if _rarely(draw, 10):
        out += b"\x0a" + _varint(len(name)) + name
    return out


@st.composite
def front_door_examples(draw: st.DrawFn) -> FrontDoorExample:
    method = draw(st.sampled_from(OIP_METHODS)) if _rarely(draw, 5) else "ModelInfer"
    kind = draw(st.integers(0, 5))
    if kind == 5:
        payload = draw(st.binary(max_size=128))
    elif kind == 4:
        payload = draw(protobuf_fields())
    else:
        payload = draw(front_door_messages())
        if kind == 3:
            payload = draw(mutated(payload))
    metadata: list[tuple[str, str]] = []
    if draw(st.booleans()):
        metadata.append(("x-user-id", draw(st.one_of(HEADER_TEXT, st.just("")))))
    if _rarely(draw, 10):  # clients may not choose these: Envoy strips them
        metadata.append(
            (
                draw(
                    st.sampled_from(["x-modelhub-model", "x-modelhub-bucket", "x-modelhub-version"])
                ),
                draw(HEADER_TEXT),
            )
        )
    return FrontDoorExample(method, payload, metadata, _rarely(draw, 20))


# ---------------------------------------------------------------------- resource names


@dataclass
class NameExample:
    text: str
    labels: dict[str, str]
    tags: list[str]


@st.composite
def name_examples(draw: st.DrawFn) -> NameExample:
    part = names
    shape = draw(st.integers(0, 6))
    if shape == 0:
        text = draw(part)
    elif shape == 1:
        text = f"models/{draw(part)}"
    elif shape == 2:
        number = draw(st.one_of(tricky, st.integers().map(str), st.text(max_size=5)))
        text = f"models/{draw(part)}/versions/{number}"
    elif shape == 3:
        text = f"models/{draw(part)}@{draw(part)}"
    elif shape == 4:
        text = f"models/{draw(part)}/aliases/{draw(part)}"
    elif shape == 5:
        text = f"{draw(part)}:{draw(st.one_of(tricky, st.text(max_size=5)))}"
    else:
        text = draw(st.text(max_size=100))
    return NameExample(
        text,
        draw(st.dictionaries(part, st.text(max_size=300), max_size=3)),
        draw(st.lists(part, max_size=3)),
    )


# ------------------------------------------------------------------ endpoint policies

WEIGHTS = st.one_of(
    st.sampled_from([0.0, 1.0, 10.0, 90.0, -1.0, -0.0, 1e308, 5e-324, 1e-300, 1e-5, 1e4, 2.0**63]),
    st.floats(),
)
MODELS = st.one_of(
    st.sampled_from(["models/m", "m", "models/nope", "models/M", "", "models/m/versions/1"]),
    names.map(lambda s: f"models/{s}"),
)
POOLS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "127.0.0.1:50051",
                "[::1]:8001",
                "host:0",
                "host:65536",
                "host",
                "host:80\n",
                ":80",
                "h" * 5000,
            ]
        ),
        st.text(max_size=20),
    ),
    max_size=2,
)


@st.composite
def selectors(draw: st.DrawFn) -> rpb.VersionSelector:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return rpb.VersionSelector(
            version=draw(st.one_of(st.integers(1, 4), st.integers(-(2**63), 2**63 - 1)))
        )
    if kind == 1:
        return rpb.VersionSelector(
            alias=draw(st.one_of(st.sampled_from(["champion", "latest", "nope"]), names))
        )
    if kind == 2:
        return rpb.VersionSelector(
            version=draw(st.integers(1, 3)), resolved_version=draw(st.integers(-5, 5))
        )
    return rpb.VersionSelector()


VARIANT_NAMES = st.one_of(st.sampled_from(["a", "b", "c", "s"]), names)


def _mostly(draw: st.DrawFn, good: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> Any:
    """Usually a well-formed value (so that validation goes on to the next field)."""
    return draw(wild) if _rarely(draw, 16) else draw(good)


GOOD_SELECTORS = st.one_of(
    st.integers(1, 3).map(lambda n: rpb.VersionSelector(version=n)),
    st.sampled_from(["champion", "latest"]).map(lambda a: rpb.VersionSelector(alias=a)),
    st.just(rpb.VersionSelector()),
)


@st.composite
def endpoints(draw: st.DrawFn) -> rpb.Endpoint:
    endpoint = rpb.Endpoint(
        description=_mostly(draw, st.text(max_size=20), st.just("d" * 5000)),
        salt=_mostly(draw, st.text(max_size=10), st.just("s" * 129)),
        labels=_mostly(
            draw,
            st.dictionaries(ids, st.text(max_size=20), max_size=2),
            st.dictionaries(names, st.text(max_size=300), max_size=2),
        ),
    )
    taken = draw(st.lists(st.sampled_from("abcdefgh"), min_size=3, max_size=6, unique=True))
    count = _mostly(draw, st.integers(1, 3), st.integers(0, 5))
    for index in range(count):
        endpoint.variants.add(
            name=_mostly(draw, st.just(taken[index % len(taken)]), VARIANT_NAMES),
            model=_mostly(draw, st.just("models/m"), MODELS),
            selector=_mostly(draw, GOOD_SELECTORS, selectors()),
            weight=_mostly(draw, st.floats(1, 100), WEIGHTS),
            pool=_mostly(draw, st.just([]), POOLS),
        )
    for index in range(_mostly(draw, st.integers(0, 1), st.integers(0, 3))):
        endpoint.shadows.add(
            name=_mostly(draw, st.just(f"shadow{index}"), VARIANT_NAMES),
            model=_mostly(draw, st.just("models/m"), MODELS),
            selector=_mostly(draw, GOOD_SELECTORS, selectors()),
            sample_rate=_mostly(draw, st.floats(0, 1), st.floats()),
            pool=_mostly(draw, st.just([]), POOLS),
        )
    endpoint.fallback = _mostly(draw, st.sampled_from(["", *taken[:count]]), VARIANT_NAMES)
    if draw(st.booleans()):
        source = _mostly(draw, st.sampled_from([1, 2]), st.sampled_from([0, 3, 99]))
        endpoint.sticky_key.source = source  # type: ignore[assignment]
        good_name = st.sampled_from(["x-user-id", "user", "session.id"])
        wild_name = st.one_of(
            st.sampled_from(["grpc-timeout", "X-User", "x-user\n", ":path", "", "a b"]),
            st.text(max_size=130),
        )
        endpoint.sticky_key.name = _mostly(draw, good_name, wild_name)
    if _AUDIT and _rarely(draw, 4):  # the payload audit policy
        endpoint.audit.sample_rate = _mostly(draw, st.floats(0, 1), st.floats())
        endpoint.audit.redact_inputs.extend(
            _mostly(
                draw,
                st.lists(st.sampled_from(["x", "a"]), max_size=2),
                st.lists(st.text(max_size=300), max_size=3),
            )
        )
    return endpoint


_AUDIT = "audit" in rpb.Endpoint.DESCRIPTOR.fields_by_name


@dataclass
class EndpointExample:
    endpoint_id: str
    endpoint: rpb.Endpoint
    # Update `endpoints/base` with this mask instead of creating an endpoint.
    update_mask: list[str] | None = None


@st.composite
def endpoint_examples(draw: st.DrawFn) -> EndpointExample:
    endpoint = draw(endpoints())
    if _rarely(draw, 5):
        mask = draw(
            st.lists(
                st.one_of(
                    st.sampled_from(
                        [
                            "variants",
                            "shadows",
                            "fallback",
                            "sticky_key",
                            "salt",
                            "labels",
                            "description",
                            "name",
                            "etag",
                        ]
                    ),
                    st.text(max_size=10),
                ),
                max_size=3,
            )
        )
        return EndpointExample("base", endpoint, mask)
    return EndpointExample(_mostly(draw, ids, names), endpoint)


# ------------------------------------------------------------------------ REST bodies


@dataclass
class RestExample:
    model: str
    version: str
    body: bytes
    encoding: str
    header_length: str | None


@st.composite
def _rest_data(draw: st.DrawFn, datatype: str, shape: list[int]) -> Any:
    """`data` for a JSON tensor: values of the datatype, nested by the shape or flat;
    rarely values of other types, a wrong count, or any JSON."""
    count = _count(shape)
    dtype = OIP_TO_NUMPY.get(datatype)
    values: st.SearchStrategy[Any]
    if datatype in ("BOOL", "BYTES", "FP16", "FP32", "FP64"):
        values = {
            "BOOL": st.booleans(),
            "BYTES": st.text(max_size=5),
            "FP16": st.floats(width=16, allow_nan=False, allow_infinity=False),
            "FP32": st.floats(width=32, allow_nan=False, allow_infinity=False),
            "FP64": st.floats(allow_nan=False, allow_infinity=False),
        }[datatype]
    elif dtype is not None and not _rarely(draw, 4):
        info = np.iinfo(dtype)
        values = st.integers(int(info.min), int(info.max))
    else:
        values = st.integers(-(2**64), 2**64)
    if count > MAX_DRAWN_ELEMENTS or _rarely(draw, 12):
        return draw(json_values)
    if _rarely(draw, 12):
        values = st.one_of(values, json_values)
    flat = draw(st.lists(values, min_size=count, max_size=count))
    if _rarely(draw, 12):
        flat = flat[: draw(st.integers(0, len(flat)))] + draw(st.lists(values, max_size=2))
    if (
        len(flat) == count
        and 0 < len(shape) <= 8
        and all(d > 0 for d in shape)
        and draw(st.booleans())
    ):
        array = np.empty(count, dtype=object)
        array[:] = flat
        return array.reshape(shape).tolist()
    return flat


REST_PARAMETERS = {
    "priority": st.integers(0, 1),
    "timeout": st.integers(10**6, 10**8),
    "binary_data_output": st.booleans(),
}


@st.composite
def rest_examples(draw: st.DrawFn) -> RestExample:
    model = draw(st.sampled_from(sorted(SCHEMAS)))
    path_model = _mostly(
        draw, st.just(model), st.one_of(st.sampled_from(MODEL_NAMES), st.text(max_size=10))
    )
    version = _mostly(
        draw, st.sampled_from(["", "1"]), st.one_of(st.sampled_from(VERSIONS), tricky)
    )
    document: dict[str, Any] = {}
    binary_parts: list[bytes] = []
    specs: list[tuple[str, str, int | None]] = list(SCHEMAS[model])
    if _rarely(draw, 8):
        specs = [
            (
                draw(st.text(max_size=3)),
                draw(st.one_of(st.sampled_from(DATATYPES), st.text(max_size=4))),
                None,
            )
            for _ in range(draw(st.integers(0, 3)))
        ]
    tensors: list[Any] = []
    for name, datatype, width in specs:
        shape = draw(shapes(width))
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if _rarely(draw, 3):  # binary tensor extension
            raw = draw(raw_payloads(datatype, shape))
            size: Any = len(raw)
            if _rarely(draw, 10):
                size = draw(st.one_of(st.integers(-5, 2**70), json_values))
            tensor["parameters"] = {"binary_data_size": size}
            binary_parts.append(raw)
        else:
            tensor["data"] = draw(_rest_data(datatype, shape))
        if _rarely(draw, 15):  # one field replaced or removed
            key = draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters"]))
            if draw(st.booleans()):
                tensor.pop(key, None)
            else:
                tensor[key] = draw(json_values)
        tensors.append(tensor)
    document["inputs"] = tensors
    if draw(st.booleans()):
        document["outputs"] = [
            {"name": name, "parameters": {"binary_data": draw(st.booleans())}}
            for name in draw(st.lists(st.sampled_from(OUTPUTS[model]), max_size=2, unique=True))
        ]
    if draw(st.booleans()):
        document["parameters"] = {
            name: draw(REST_PARAMETERS[name])
            for name in draw(
                st.lists(st.sampled_from(sorted(REST_PARAMETERS)), max_size=2, unique=True)
            )
        }
    if draw(st.booleans()):
        document["id"] = draw(st.text(max_size=8))
    if _rarely(draw, 8):  # a field replaced by anything
        document[draw(st.sampled_from(["inputs", "outputs", "parameters", "id"]))] = draw(
            json_values
        )
    shape_kind = draw(st.integers(0, 19))
    if shape_kind == 19:
        header = draw(st.binary(max_size=64))
    elif shape_kind == 18:
        header = json.dumps(draw(json_values)).encode()
    else:
        # json.dumps writes NaN and Infinity as such: not JSON, which the parser refuses.
        header = json.dumps(document).encode()
    binary = b"".join(binary_parts)
    header_length: str | None = None
    if binary or _rarely(draw, 10):
        header_length = str(len(header))
        if _rarely(draw, 10):
            header_length = draw(
                st.one_of(tricky, st.integers(-5, len(header) + len(binary) + 5).map(str))
            )
    body = header + binary if header_length is not None else header
    encoding = _mostly(
        draw,
        st.sampled_from(["", "identity", "gzip", "deflate"]),
        st.sampled_from(["GZIP ", "br", "x"]),
    )
    if encoding.strip().lower() == "gzip":
        if _rarely(draw, 10):  # inflates past the limit
            body = b" " * draw(st.sampled_from([100_000, 1_000_000])) + body
        body = gzip.compress(body, compresslevel=1)
    elif encoding == "deflate":
        body = zlib.compress(body, 1)
    if encoding in ("gzip", "deflate") and _rarely(draw, 10):
        body = draw(mutated(body))
    return RestExample(path_model, version, body, encoding, header_length)


def rest_request(example: RestExample) -> rest_pb2.RestRequest:
    request = rest_pb2.RestRequest(model_name=example.model, model_version=example.version)
    request.body.data = example.body
    return request
