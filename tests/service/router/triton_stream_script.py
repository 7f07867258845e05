"""tritonclient.grpc's streaming API (start_stream / async_stream_infer) against a server;
prints the answers as JSON. A subprocess: tritonclient's protobuf symbols collide with
ModelHub's. Usage: triton_stream_script.py HOST:PORT WIDTH"""

from __future__ import annotations

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient


def main() -> None:
    url, width = sys.argv[1], int(sys.argv[2])
    client = grpcclient.InferenceServerClient(url=url)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i in range(12):
        x = np.full((1, width), float(i), np.float32)
        tensor = grpcclient.InferInput("x", [1, width], "FP32")
        tensor.set_data_from_numpy(x)
        client.async_stream_infer("m", [tensor], model_version=str(i % 3 + 1), request_id=f"s{i}")
    tensor = grpcclient.InferInput("x", [1, width], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, width), np.float32))
    client.async_stream_infer("nosuch", [tensor], request_id="bad")
    results, error = {}, ""
    for _ in range(13):
        result, failure = answers.get(timeout=30)
        if failure is not None:
            error = str(failure)
            continue
        response = result.get_response()
        results[response.id] = {
            "version": response.model_version,
            "y": result.as_numpy("y").ravel().tolist(),
        }
    client.stop_stream()
    print(json.dumps({"results": results, "error": error}))


if __name__ == "__main__":
    main()
