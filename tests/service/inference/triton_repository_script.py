"""Runs tritonclient.grpc's repository, statistics and configuration calls against a
server and prints what it got as JSON (a subprocess: tritonclient's protobuf symbols
collide with ModelHub's). Usage: triton_repository_script.py HOST:PORT MODEL"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main() -> None:
    url, model = sys.argv[1:3]
    client = grpcclient.InferenceServerClient(url=url)
    before = client.get_model_repository_index(as_json=True)
    client.load_model(model)
    loaded = client.get_model_repository_index(as_json=True)
    config = client.get_model_config(model, as_json=True)
    x = np.ones((2, 8), dtype=np.float32)
    infer_input = grpcclient.InferInput("x", list(x.shape), "FP32")
    infer_input.set_data_from_numpy(x)
    client.infer(model, [infer_input])
    statistics = client.get_inference_statistics(model, as_json=True)
    client.unload_model(model)
    after = client.get_model_repository_index(as_json=True)
    try:
        client.get_inference_statistics(model)
        missing = ""
    except InferenceServerException as exc:
        missing = str(exc.status())
    print(
        json.dumps(
            {
                "before": before,
                "loaded": loaded,
                "config": config,
                "statistics": statistics,
                "after": after,
                "missing": missing,
            }
        )
    )


if __name__ == "__main__":
    main()
