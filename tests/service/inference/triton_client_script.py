"""Runs tritonclient.grpc against a server and prints what it got as JSON.

tritonclient's generated protobuf module defines the same `inference.*` symbols as
ModelHub's, so it cannot share a process with the server: the test runs this script
with `sys.executable`. Usage: triton_client_script.py HOST:PORT MODEL DATATYPE ROWS WIDTH
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient


def main() -> None:
    url, model, datatype, rows, width = sys.argv[1:6]
    client = grpcclient.InferenceServerClient(url=url)
    metadata = client.get_model_metadata(model, as_json=True)
    dtype = {"FP32": np.float32, "INT64": np.int64, "FP16": np.float16}[datatype]
    x = (np.arange(int(rows) * int(width)) % 7 - 3).astype(dtype).reshape(int(rows), int(width))
    infer_input = grpcclient.InferInput("x", list(x.shape), datatype)
    infer_input.set_data_from_numpy(x)
    result = client.infer(
        model,
        [infer_input],
        outputs=[grpcclient.InferRequestedOutput("y")],
        request_id="triton-1",
        priority=1,
        timeout=5_000_000,
    )
    y = result.as_numpy("y")
    response = result.get_response(as_json=True)
    print(
        json.dumps(
            {
                "live": client.is_server_live(),
                "ready": client.is_server_ready(),
                "model_ready": client.is_model_ready(model),
                "metadata": metadata,
                "x": x.tolist(),
                "y": y.tolist(),
                "y_dtype": str(y.dtype),
                "id": response.get("id"),
                "model_version": response.get("model_version"),
            }
        )
    )


if __name__ == "__main__":
    main()
