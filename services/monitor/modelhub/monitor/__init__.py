"""The monitor service: the observability plane.

Every inference replica reports the requests it serves to it (`InferenceEvent`s, direct
calls and those Envoy routed to an endpoint variant alike; the router only forwards
outcomes, since no request passes through it). It keeps per-series statistics over
sliding windows in bounded memory (`series`, `windows`, `sketch`), compares live feature
samples with each version's baseline (`samples`, `profile`, `drift`), joins outcomes to the
requests that earned them (`outcomes`) for experiment reports (`experiments`), compares
shadows with primaries (`shadows`), evaluates alert rules (`rules`, `alerts`, `webhook`),
persists its configuration (`store`, `migrations`) and exposes Prometheus metrics
(`exposition`). `monitor.Monitor` ties the domain together; `api` is the gRPC edge.
"""
