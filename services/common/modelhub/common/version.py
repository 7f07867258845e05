"""The installed ModelHub version (the units are released together, at one version)."""

from __future__ import annotations

from importlib import metadata


def _installed_version() -> str:
    try:
        return metadata.version("modelhub-common")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


__version__ = _installed_version()
