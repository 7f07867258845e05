"""The traffic router: serves the Open Inference Protocol and routes each request to a model
version by the registry's endpoints (sticky A/B buckets, canaries, fallback), mirrors a
sample to shadow versions, and reports every request to the monitor."""
