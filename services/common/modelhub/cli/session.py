"""What every `modelhub` command runs with: the parsed arguments, the registry client,
progress bars, and where notes go."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from modelhub.cli.output import write
from modelhub.cli.progress import Bars
from modelhub.client import RegistryClient
from modelhub.common.channels import Metadata, bearer


@dataclass
class Session:
    args: argparse.Namespace
    client: RegistryClient
    bars: Bars

    @property
    def metadata(self) -> Metadata:
        """Call metadata for the other services (monitor, router): the bearer token."""
        return bearer(self.args.token)

    def say(self, line: str) -> None:
        """A note for the person at the terminal, on stderr (none with --quiet)."""
        if not self.args.quiet:
            write(line, sys.stderr)


class MissingPackageError(Exception):
    """A command implemented by a unit that is not installed (exit status 2)."""


INFERENCE_PACKAGE = "modelhub-inference"


@contextmanager
def inference_unit() -> Iterator[None]:
    """Around the (lazy) imports of a command implemented by the modelhub-inference
    package (`score`, `versions optimize|report`): without it, a clear message."""
    try:
        for name in ("modelhub.inference", "modelhub.optimize", "modelhub.scoring"):
            if importlib.util.find_spec(name) is None:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        yield
    except ModuleNotFoundError as exc:
        raise MissingPackageError(
            f"this command needs the {INFERENCE_PACKAGE} package "
            f"(pip install {INFERENCE_PACKAGE}): {exc}"
        ) from None
