"""Request size limits shared by the inference service and the front door (Envoy)."""

from __future__ import annotations

# What an inference request may carry besides its tensor data (model name, tensor names and
# shapes, parameters, requested outputs): the gRPC receive limit is max_request_bytes plus
# this.
REQUEST_ENVELOPE_BYTES = 1 << 20

# The inference service's default for the largest tensor payload of one request
# (MODELHUB_INFERENCE_MAX_REQUEST_BYTES).
DEFAULT_MAX_REQUEST_BYTES = 32 << 20
