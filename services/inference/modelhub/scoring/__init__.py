"""Offline batch scoring: a registered model version over a whole Parquet, CSV or NPY file.

Domain modules (no grpc): `columns` (table columns ↔ model tensors, per-row checks),
`io` (readers, partitions, part files and the final writers), `manifest` (what is done,
for resuming), `engine` (one ONNX Runtime session scoring a partition), `job` (prepare,
run, assemble), `distributed` (the same job on a Dask cluster). The CLI
(`modelhub score`) resolves and downloads the version and calls `job.score`.

Needs the `score` extra (`pip install 'modelhub-inference[score]'`: pyarrow, dask[distributed]).
"""
