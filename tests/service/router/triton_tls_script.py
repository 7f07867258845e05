"""Runs tritonclient (gRPC and HTTP) against a front door that terminates TLS, trusting the
given CA, and prints what it got as JSON.

Run as a subprocess (tritonclient pins its own protobuf and gevent). Usage:
triton_tls_script.py HOST:PORT CA_FILE MODEL WIDTH
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def main() -> None:
    url, ca, model, width = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    x = np.arange(width, dtype=np.float32).reshape(1, width)
    answers: dict[str, object] = {}

    grpc_client = grpcclient.InferenceServerClient(url=url, ssl=True, root_certificates=ca)
    grpc_input = grpcclient.InferInput("x", list(x.shape), "FP32")
    grpc_input.set_data_from_numpy(x)
    grpc_result = grpc_client.infer(model, [grpc_input])
    answers["grpc"] = {
        "live": grpc_client.is_server_live(),
        "ready": grpc_client.is_model_ready(model),
        "y": grpc_result.as_numpy("y").tolist(),
    }
    grpc_client.close()

    http_client = httpclient.InferenceServerClient(url=url, ssl=True, ssl_options={"ca_certs": ca})
    http_input = httpclient.InferInput("x", list(x.shape), "FP32")
    http_input.set_data_from_numpy(x, binary_data=True)
    http_result = http_client.infer(model, [http_input])
    answers["http"] = {
        "live": http_client.is_server_live(),
        "ready": http_client.is_model_ready(model),
        "y": http_result.as_numpy("y").tolist(),
    }
    http_client.close()
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
