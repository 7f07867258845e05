"""Python client of the ModelHub services."""

from modelhub.client.errors import ClientError
from modelhub.client.registry import RegistryClient

__all__ = ["ClientError", "RegistryClient"]
