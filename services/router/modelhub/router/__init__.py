"""The traffic router: Envoy's control plane. It follows the registry's endpoints (sticky A/B
buckets, canaries, shadows, fallback) and writes them as Envoy's routes and clusters
(`xds`); Envoy carries every request. `ExplainRoute` computes the same bucket function as
Envoy's routing filter."""
