"""Tracing and structured logging.

Tracing uses the OpenTelemetry SDK configured by the standard OTEL_* variables:
`OTEL_TRACES_EXPORTER` (`otlp`, `console` or `none`; default `none`, or `otlp` when
`OTEL_EXPORTER_OTLP_ENDPOINT`/`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set),
`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_*`. With no exporter, spans
are not recorded but trace context still propagates and log lines still carry trace ids.

Logs are one JSON object per line with `trace_id`/`span_id` of the current span.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modelhub.common.version import __version__

_configured_provider: TracerProvider | None = None
_recording = False


def recording() -> bool:
    """Whether this process records spans (an exporter or span processor is configured)."""
    return _recording


def exporter_name(env: Mapping[str, str]) -> str:
    """Which exporter the OTEL_* variables ask for."""
    name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if name:
        return name.split(",")[0].strip()
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return "none"


def _exporter(name: str) -> SpanExporter | None:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    return None


def setup_tracing(
    service_name: str,
    env: Mapping[str, str] | None = None,
    extra_processors: list[SpanProcessor] | None = None,
) -> TracerProvider:
    """Install the process's tracer provider (once per process; later calls reuse it)."""
    global _configured_provider, _recording
    if _configured_provider is not None:
        for processor in extra_processors or []:
            _configured_provider.add_span_processor(processor)
            _recording = True
        return _configured_provider
    env = os.environ if env is None else env
    exporter = _exporter(exporter_name(env))
    resource = Resource.create(
        {
            "service.name": env.get("OTEL_SERVICE_NAME", service_name),
            "service.version": __version__,
        }
    )
    kwargs: dict[str, Any] = {"resource": resource}
    if exporter is None and not extra_processors and "OTEL_TRACES_SAMPLER" not in env:
        # Nothing would receive the spans: keep context propagation, skip recording.
        kwargs["sampler"] = ParentBased(ALWAYS_OFF)
    provider = TracerProvider(**kwargs)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in extra_processors or []:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _configured_provider = provider
    _recording = exporter is not None or bool(extra_processors)
    return provider


_PROPAGATOR = TraceContextTextMapPropagator()


def record_span_in_trace(
    tracer: trace.Tracer, name: str, traceparent: str, attributes: dict[str, str | int]
) -> None:
    """Record a zero-work span as a child of the W3C `traceparent` (e.g. a monitor's handling
    of an event that a traced request produced, received later in a batch)."""
    parent = _PROPAGATOR.extract({"traceparent": traceparent})
    span = tracer.start_span(name, context=parent, attributes=attributes)
    span.end()


def shutdown_tracing() -> None:
    if _configured_provider is not None:
        _configured_provider.force_flush(timeout_millis=2000)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the active trace and span ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Configure the root logger for a service process (replaces existing handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc and urllib3 are chatty at INFO.
    logging.getLogger("grpc").setLevel(logging.WARNING)
