"""Structured logs carry the active trace id; exporter selection follows OTEL_* variables."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from modelhub.common.telemetry import JsonFormatter, exporter_name


def test_json_log_lines_carry_trace_and_span_ids() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    formatter = JsonFormatter("registry")
    record = logging.LogRecord("modelhub.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.fields = {"model": "fraud"}
    with tracer.start_as_current_span("work") as span:
        line = json.loads(formatter.format(record))
        context = span.get_span_context()
    assert line["msg"] == "hello you"
    assert line["service"] == "registry"
    assert line["model"] == "fraud"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    outside = json.loads(formatter.format(record))
    assert "trace_id" not in outside


def test_exporter_selection() -> None:
    assert exporter_name({}) == "none"
    assert exporter_name({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}) == "otlp"
    assert exporter_name({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    explicit_none = {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}
    assert exporter_name(explicit_none) == "none"
