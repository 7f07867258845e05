"""The floor of Python gRPC overhead: a minimal `grpc.aio` Open Inference Protocol server.

It decodes the one input tensor with `numpy.frombuffer`, runs onnxruntime on it at once
(unbatched, on the event loop thread) and answers in `raw_output_contents`: no validation,
no metrics, no tracing, no interceptors. The benchmark compares ModelHub's inference
service with it.

With `--runtime` the same servicer runs inside ModelHub's `ServiceRuntime` (the
OpenTelemetry and edge interceptors every ModelHub service has): the difference between
the two is the platform's per-request cost, separate from the inference service's own.

    python bench/minimal_server.py MODEL.onnx --port 0 --ready-file FILE [--runtime]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelhub.common.dtypes import ORT_TO_OIP, numpy_dtype


class MinimalServicer(pb_grpc.GRPCInferenceServiceServicer):
    """ServerLive and ModelInfer only; one model, one session."""

    def __init__(self, model: Path, threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_types = [ORT_TO_OIP[o.type] for o in self.session.get_outputs()]

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ModelInfer(self, request, context):
        feeds = {}
        for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            dtype = numpy_dtype(tensor.datatype)
            feeds[tensor.name] = np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.shape))
        results = self.session.run(self.output_names, feeds)
        response = pb.ModelInferResponse(
            model_name=request.model_name, model_version="1", id=request.id
        )
        for name, datatype, array in zip(
            self.output_names, self.output_types, results, strict=True
        ):
            response.outputs.add(name=name, datatype=datatype, shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


async def serve(model: Path, port: int, threads: int, ready_file: str, runtime: bool) -> None:
    servicer = MinimalServicer(model, threads)
    if runtime:
        from modelhub.common.auth import Role
        from modelhub.common.server import ServiceRuntime
        from modelhub.common.settings import ServiceSettings

        service_runtime = ServiceRuntime(
            "minimal",
            ServiceSettings(port=port, metrics_port=-1),
            {"ModelInfer": Role.READER, "ServerLive": Role.READER},
        )
        service_runtime.add_service(
            "inference.GRPCInferenceService",
            pb_grpc.add_GRPCInferenceServiceServicer_to_server,
            servicer,
        )
        await service_runtime.start()
        bound = service_runtime.port
        server = service_runtime.server
    else:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
    if ready_file:
        tmp = ready_file + ".tmp"
        Path(tmp).write_text(json.dumps({"port": bound, "pid": os.getpid()}))
        os.replace(tmp, ready_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--runtime", action="store_true", help="inside ServiceRuntime")
    args = parser.parse_args()
    asyncio.run(serve(args.model, args.port, args.threads, args.ready_file, args.runtime))


if __name__ == "__main__":
    main()
