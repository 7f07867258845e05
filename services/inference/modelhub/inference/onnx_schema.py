"""Reads a model's input/output schema from ONNX bytes (for sources without a registry):
the suite's one reader, `modelhub.common.onnx_schema`, with the registry's rules."""

from __future__ import annotations

from modelhub.common.onnx_schema import read_schema

__all__ = ["read_schema"]
