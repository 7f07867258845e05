"""Runs tritonclient.http against the front door and prints what it got as JSON.

Run as a subprocess (tritonclient pins its own protobuf and gevent). Usage:
triton_http_script.py HOST:PORT MODEL ROWS WIDTH
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def main() -> None:
    url, model, rows, width = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    client = httpclient.InferenceServerClient(url=url, concurrency=2)
    x = (np.arange(rows * width) % 7 - 3).astype(np.float32).reshape(rows, width)
    answers = {}
    for mode in ("binary", "json", "binary_input_json_output", "gzip"):
        infer_input = httpclient.InferInput("x", list(x.shape), "FP32")
        infer_input.set_data_from_numpy(
            x, binary_data=mode in ("binary", "binary_input_json_output", "gzip")
        )
        outputs = None
        if mode == "json" or mode == "binary_input_json_output":
            outputs = [httpclient.InferRequestedOutput("y", binary_data=False)]
        result = client.infer(
            model,
            [infer_input],
            outputs=outputs,
            request_id=f"http-{mode}",
            headers={"x-user-id": "alice"},
            request_compression_algorithm="gzip" if mode == "gzip" else None,
        )
        response = result.get_response()
        answers[mode] = {
            "y": result.as_numpy("y").tolist(),
            "id": response.get("id"),
            "model_version": response.get("model_version"),
            "parameters": response.get("parameters", {}),
        }
    async_result = client.async_infer(model, [infer_input]).get_result()
    errors = {}
    try:
        client.infer("nosuch-model", [infer_input])
    except InferenceServerException as exc:
        errors["unknown"] = {"status": exc.status(), "message": exc.message()}
    bad = httpclient.InferInput("x", [rows, width + 1], "FP32")
    bad.set_data_from_numpy(np.zeros((rows, width + 1), np.float32))
    try:
        client.infer(model, [bad])
    except InferenceServerException as exc:
        errors["bad_shape"] = {"status": exc.status(), "message": exc.message()}
    print(
        json.dumps(
            {
                "live": client.is_server_live(),
                "ready": client.is_server_ready(),
                # Ready as the caller sees it: the variant its key maps to.
                "model_ready": client.is_model_ready(model, headers={"x-user-id": "alice"}),
                "unknown_ready": client.is_model_ready("nosuch-model"),
                "server": client.get_server_metadata(),
                "metadata": client.get_model_metadata(model),
                "config": client.get_model_config(model),
                "x": x.tolist(),
                "answers": answers,
                "async_y": async_result.as_numpy("y").tolist(),
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    main()
