"""The inference service: ONNX Runtime sessions behind an adaptive request batcher.

Domain modules (no grpc, no generated `_pb2` imports): `spec`, `signature`, `cost_model`,
`batcher`, `runtime`, `cache`, `source`, `local_source`, `repository`, `deployments`,
`service`, `stats`. The edge: `api` and `repository_api` (servicers), `convert`
(proto ↔ domain), `registry_source` (the registry client), `main` (wiring).
"""
