"""ModelHub: model registry, adaptive-batching inference, routing and monitoring."""

__version__ = "0.1.0"
