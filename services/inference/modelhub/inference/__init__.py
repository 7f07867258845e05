"""The inference service: ONNX Runtime sessions behind an adaptive request batcher.

Domain modules (no grpc, no generated `_pb2` imports): `spec`, `signature`, `cost_model`,
`batcher`, `runtime`, `memory` (what loaded versions hold), `cache`, `source`,
`local_source`, `repository`, `deployments`, `endpoints` (which versions endpoints route
to), `service`, `stats`, `reporting` (one event per served request to the monitor),
`audit`. The edge: `api`, `rest_api` and `repository_api` (servicers), `convert` and `rest`
(proto and REST bodies ↔ domain), `registry_source` (the registry client), `workers` (one
process per core), `main` (wiring). How batching works and how to tune it:
docs/batching.md.
"""
