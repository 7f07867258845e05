"""`modelhub`: publish, promote, route and watch models from the shell.

Tables for people by default; `--json` (anywhere on the command line) prints JSON for
scripts: protobuf's JSON mapping with the proto field names, 64-bit integers as numbers
(as strings only beyond 2**53, where JSON parsers lose digits); `watch --json` prints one
JSON object per line. Exit status: 0 done, 1 refused or failed (the status code and
message on stderr), 2 bad usage or a command whose package is not installed, 130
interrupted; a reader that goes away (`| head`) ends the command by SIGPIPE, as for other
Unix tools.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from google.protobuf import json_format

from modelhub.cli import fleet, monitor, resources
from modelhub.cli import score as score_cli
from modelhub.cli.output import Output, write
from modelhub.cli.progress import Bars, terminal
from modelhub.cli.session import MissingPackageError, Session
from modelhub.client import ClientError, RegistryClient
from modelhub.common.errors import ModelHubError
from modelhub.common.status import status_code_for
from modelhub.common.version import __version__

Handler = Callable[[Session], Awaitable[Output]]
Formatter = argparse.RawDescriptionHelpFormatter
DESCRIPTION_WIDTH = 88
REFERENCE_HELP = "a version: fraud@champion (alias), fraud:3 or fraud/versions/3 (number)"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _global_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The options every command takes, before or after its name. `defaults`: on the
    top-level parser only, so that a command's parser never overwrites a value given
    before the command."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--registry",
        metavar="HOST:PORT",
        default=default(_env("MODELHUB_REGISTRY_ADDRESS", "127.0.0.1:50051")),
        help="registry address (env MODELHUB_REGISTRY_ADDRESS; default 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token",
        default=default(os.environ.get("MODELHUB_TOKEN")),
        help="bearer token sent to every service (env MODELHUB_TOKEN)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON for scripts instead of tables",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress bars or notes on stderr",
    )


class Builder:
    """Adds groups and commands, each with a description, help on every argument, the
    options every command takes, and examples (a command shows those of its group's
    examples that run it)."""

    def __init__(self, groups: Any) -> None:
        self.groups = groups
        self.common = argparse.ArgumentParser(add_help=False)
        _global_options(self.common, defaults=False)
        self._examples: dict[int, tuple[str, list[str]]] = {}

    def command(
        self, parent: Any, name: str, help_text: str, description: str = "", epilog: str = ""
    ) -> argparse.ArgumentParser:
        if not epilog and id(parent) in self._examples:
            group, lines = self._examples[id(parent)]
            mine = [line for line in lines if line.startswith(f"modelhub {group} {name} ")]
            epilog = _examples("\n".join(mine)) if mine else ""
        text = description or help_text[0].upper() + help_text[1:] + "."
        parser: argparse.ArgumentParser = parent.add_parser(
            name,
            help=help_text,
            description=textwrap.fill(text, DESCRIPTION_WIDTH),
            epilog=epilog,
            formatter_class=Formatter,
            parents=[self.common],
        )
        return parser

    def group(self, name: str, help_text: str, description: str, examples: str) -> Any:
        parser = self.command(self.groups, name, help_text, description, _examples(examples))
        actions = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")
        self._examples[id(actions)] = (name, _lines(examples))
        return actions


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines()]


def _examples(text: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in _lines(text))


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _address(parser: argparse.ArgumentParser, service: str, port: int) -> None:
    env = f"MODELHUB_{service.upper()}_ADDRESS"
    parser.add_argument(
        f"--{service}",
        metavar="HOST:PORT",
        default=_env(env, f"127.0.0.1:{port}"),
        help=f"{service} address (env {env}; default 127.0.0.1:{port})",
    )


# ------------------------------------------------------------------------------ groups


def _models(b: Builder) -> None:
    g = b.group(
        "models",
        "models and publishing versions",
        "Models, and publishing an ONNX file as a model's next version.",
        """modelhub models push fraud model.onnx --alias challenger --run-id run-42
        modelhub models list --prefix fr
        modelhub models get fraud --json""",
    )
    p = b.command(g, "create", "create a model (push creates it too)")
    p.add_argument("model", help="model id, e.g. fraud")
    p.add_argument("--description", default="", help="free text")
    p.add_argument("--tag", action="append", help="a tag (repeat for several)")
    p = b.command(g, "get", "show a model")
    p.add_argument("model", help="model id")
    p = b.command(g, "delete", "delete a model and all its versions")
    p.add_argument("model", help="model id")
    p = b.command(g, "list", "list models")
    p.add_argument("--prefix", default="", help="only models whose id starts with this")
    p.add_argument("--tag", dest="tag_filter", default="", help="only models with this tag")
    p.add_argument(
        "--label", default="", help="only models with this label, key=value (e.g. owner=alice)"
    )
    p = b.command(
        g,
        "push",
        "upload an ONNX file as the model's next version",
        "Upload an ONNX file as the model's next version (created with the model if "
        "needed). The registry checks the digest and the graph and records its schema. "
        "A progress bar shows on a terminal.",
    )
    p.add_argument("model", help="model id")
    p.add_argument("file", help="the .onnx file")
    p.add_argument("--description", default="", help="free text")
    p.add_argument("--author", default="", help="who published it (default: $USER)")
    p.add_argument("--run-id", default="", help="training run id (e.g. an MLflow run)")
    p.add_argument("--dataset", default="", help="training data set name or URI")
    p.add_argument("--commit", default="", help="code revision it was built from")
    p.add_argument("--tag", action="append", help="a tag (repeat for several)")
    p.add_argument("--alias", action="append", help="point this alias at the new version")
    p.add_argument(
        "--profile", help="DataProfile JSON file: the training data's distribution (drift)"
    )


def _versions(b: Builder) -> None:
    g = b.group(
        "versions",
        "model versions: list, inspect, download, optimize",
        "A model's versions. References: fraud@champion (an alias), fraud@latest, fraud:3 "
        "or fraud/versions/3.",
        """modelhub versions list fraud
        modelhub versions get fraud@champion
        modelhub versions download fraud:3 -o model.onnx
        modelhub versions optimize fraud@champion --method dynamic-int8 --alias candidate
        modelhub versions report fraud@candidate""",
    )
    p = b.command(g, "list", "list a model's versions, newest first")
    p.add_argument("model", help="model id")
    p.add_argument("--alias", help="only the version this alias points at")
    for action, help_text in (
        ("get", "show a version: status, aliases, artifact, lineage, inputs and outputs"),
        ("archive", "archive a version (kept, never routed to or deployed again)"),
        ("delete", "delete a version that nothing uses"),
    ):
        b.command(g, action, help_text).add_argument("reference", help=REFERENCE_HELP)
    p = b.command(
        g, "download", "download a version's artifact (sha256 verified, written atomically)"
    )
    p.add_argument("reference", help=REFERENCE_HELP)
    p.add_argument("-o", "--output", required=True, help="file to write")
    _optimize(b, g)
    p = b.command(
        g,
        "report",
        "a derivative's lineage and evaluation report",
        "A derivative's lineage and evaluation report (needs the modelhub-inference package).",
    )
    p.add_argument("reference", help=REFERENCE_HELP)


def _optimize(b: Builder, g: Any) -> None:
    p = b.command(
        g,
        "optimize",
        "build a quantized (int8) or float16 derivative, measure it against its parent and "
        "register it with its lineage and report",
        "Build a quantized (int8) or float16 derivative of a READY version, measure it "
        "against its parent and register it as a new version with its lineage and report "
        "(needs the modelhub-inference package).",
    )
    p.add_argument("reference", help="the parent: " + REFERENCE_HELP)
    p.add_argument(
        "--method",
        required=True,
        choices=["dynamic-int8", "static-int8", "fp16"],
        help="how to derive it",
    )
    p.add_argument(
        "--calibration",
        default="",
        help="static-int8 calibration rows (.npz, one array per input; .npy for one input); "
        "default: synthesised from the parent's data profile",
    )
    p.add_argument(
        "--validation",
        default="",
        help="rows to compare the two on (.npz/.npy/.parquet); default: synthesised from "
        "the parent's data profile (the report says so)",
    )
    p.add_argument("--rows", type=int, default=1024, help="rows synthesised (default 1024)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads when measuring")
    p.add_argument("--alias", default="", help="point this alias at the derivative")
    p.add_argument(
        "--shadow-on",
        default="",
        metavar="ENDPOINT",
        help="add the derivative as a shadow on this endpoint (and to the model's "
        "deployments) so the shadow comparison measures it on live traffic",
    )
    p.add_argument(
        "--shadow-rate", type=float, default=1.0, help="share of traffic mirrored (0..1)"
    )


def _aliases(b: Builder) -> None:
    g = b.group(
        "alias",
        "aliases: named pointers to versions (champion, challenger)",
        "Aliases: named pointers to a model's versions. Moving one promotes a version "
        "everywhere it is selected by that alias.",
        """modelhub alias set fraud champion 3
        modelhub alias list fraud
        modelhub alias delete fraud challenger""",
    )
    p = b.command(g, "set", "point an alias at a version (creating it if needed)")
    p.add_argument("model", help="model id")
    p.add_argument("alias", help="alias name (latest is reserved)")
    p.add_argument("version", type=int, help="version number (READY)")
    p = b.command(g, "delete", "delete an alias nothing selects")
    p.add_argument("model", help="model id")
    p.add_argument("alias", help="alias name")
    p = b.command(g, "list", "list a model's aliases")
    p.add_argument("model", help="model id")


def _apply_args(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument(
        "name",
        nargs="?",
        help=f"{kind} id (default: the file's name field, {kind}s/NAME)",
    )
    p.add_argument(
        "file",
        help=f"{kind} file: JSON (// comments allowed), - for stdin; "
        f"see `modelhub {kind}s example`",
    )


def _example_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schema", action="store_true", help="print the file's JSON Schema instead")


def _deployments(b: Builder) -> None:
    g = b.group(
        "deployments",
        "deployments: which versions the inference replicas keep loaded",
        "Deployments: which versions of a model every inference replica keeps loaded, "
        "on which device, with which batching.",
        """modelhub deployments example > deployment.json
        modelhub deployments apply fraud deployment.json --wait --timeout 120
        modelhub deployments list
        modelhub fleet --model fraud""",
    )
    p = b.command(
        g,
        "apply",
        "create a deployment or replace its spec from a file",
        "Create a deployment or replace its spec from a JSON Deployment file. With --wait, "
        "return only once every inference replica the router knows reports each deployed "
        "version loaded (READY).",
    )
    _apply_args(p, "deployment")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until every inference replica has the version(s) loaded",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=300.0,
        metavar="S",
        help="with --wait: give up after S seconds (default 300; exit status 1)",
    )
    _address(p, "router", 50053)
    b.command(g, "get", "show a deployment").add_argument("deployment", help="deployment id")
    b.command(g, "delete", "delete a deployment").add_argument("deployment", help="deployment id")
    b.command(g, "list", "list deployments")
    _example_args(
        b.command(
            g,
            "example",
            "print an annotated example deployment file (or its JSON Schema)",
            "Print an example deployment file with every field explained (--json: plain "
            "JSON; --schema: the JSON Schema of the file), both derived from the API's "
            "definition of a Deployment.",
        )
    )


def _endpoints(b: Builder) -> None:
    g = b.group(
        "endpoints",
        "endpoints: routing policies (A/B splits, canaries, shadows)",
        "Endpoints: how requests for an endpoint name are split among variants (sticky "
        "A/B buckets, canaries), mirrored to shadows and audited.",
        """modelhub endpoints example > endpoint.json
        modelhub endpoints apply fraud endpoint.json
        modelhub endpoints get fraud
        modelhub endpoints audit fraud --sample-rate 0.1 --redact ssn""",
    )
    p = b.command(g, "apply", "create an endpoint or replace its policy from a file")
    _apply_args(p, "endpoint")
    b.command(g, "get", "show an endpoint's policy").add_argument("endpoint", help="endpoint id")
    b.command(g, "delete", "delete an endpoint").add_argument("endpoint", help="endpoint id")
    b.command(g, "list", "list endpoints with their variants as resolved now")
    p = b.command(g, "audit", "set the payload audit policy (sample rate, redacted inputs)")
    p.add_argument("endpoint", help="endpoint id")
    p.add_argument(
        "--sample-rate",
        type=float,
        required=True,
        help="fraction of requests recorded with their payloads, 0..1 (0: off)",
    )
    p.add_argument(
        "--redact", action="append", help="input name never recorded (repeat, or comma-separate)"
    )
    _example_args(
        b.command(
            g,
            "example",
            "print an annotated example endpoint file (or its JSON Schema)",
            "Print an example endpoint file with every field explained (--json: plain "
            "JSON; --schema: the JSON Schema of the file), both derived from the API's "
            "definition of an Endpoint.",
        )
    )


def _audit(b: Builder) -> None:
    g = b.group(
        "audit",
        "the payload audit log kept by the monitor (admin role)",
        "The payload audit log kept by the monitor (admin role): sampled requests with "
        "their inputs and outputs.",
        """modelhub audit list --endpoint fraud --since 1h
        modelhub audit get 3f2a9c1e""",
    )
    p = b.command(g, "list", "records, newest first (summaries unless --full)")
    p.add_argument("--endpoint", default="", help="endpoint id")
    p.add_argument("--since", default="", help="RFC 3339 time or a duration before now (15m, 2h)")
    p.add_argument("--until", default="", help="RFC 3339 time or a duration before now")
    p.add_argument("--limit", type=int, default=50, help="most records (default 50)")
    p.add_argument("--full", action="store_true", help="with the payloads (JSON)")
    _address(p, "monitor", 50054)
    p = b.command(g, "get", "one request's record with its payloads (JSON)")
    p.add_argument("request_id", help="the request id (ModelInfer id)")
    _address(p, "monitor", 50054)


def _reports(b: Builder) -> None:
    commands = [
        ("stats", "live statistics per model, version, endpoint and variant",
         "modelhub stats --endpoint fraud\nmodelhub stats fraud --version 2 --window 3600"),
        ("drift", "drift report of a model version against its baseline",
         "modelhub drift fraud --version 1 --window 3600"),
        ("experiment", "per-variant outcome rates and significance on an endpoint",
         "modelhub experiment fraud --window 3600"),
        ("shadows", "shadow vs primary comparison on an endpoint",
         "modelhub shadows fraud"),
        ("alerts", "pending and firing alerts", "modelhub alerts --json"),
    ]  # fmt: skip
    for name, help_text, examples in commands:
        p = b.command(b.groups, name, help_text, epilog=_examples(examples))
        _address(p, "monitor", 50054)
        p.add_argument("--window", type=int, default=300, help="window in seconds: 60, 300 or 3600")
        if name == "stats":
            p.add_argument("model", nargs="?", default="", help="model id (default: every model)")
            p.add_argument(
                "--version", type=int, default=0, help="version number (default: every one)"
            )
            p.add_argument("--endpoint", default="", help="endpoint id")
            p.add_argument("--variant", default="", help="variant name")
        elif name == "drift":
            p.add_argument("model", help="model id")
            p.add_argument("--version", type=int, default=0, help="version number")
        elif name in ("experiment", "shadows"):
            p.add_argument("endpoint", help="endpoint id")


def _watch_and_fleet(b: Builder) -> None:
    p = b.command(
        b.groups,
        "watch",
        "follow the registry's changes, one line per change",
        "Follow the registry's change feed: the current state first (`exists`), then one "
        "line per change (time, revision, kind, name, what changed). --json: one JSON "
        "object per line (NDJSON), with the in-sync and progress markers.",
        _examples(
            "modelhub watch\nmodelhub watch --kind endpoint --kind deployment\n"
            "modelhub watch --kind version --name fraud --json | jq .version.name\n"
            "modelhub watch --from 42"
        ),
    )
    p.add_argument(
        "--kind",
        action="append",
        choices=sorted(resources.KINDS_BY_NAME),
        help="only this kind of resource (repeat for several)",
    )
    p.add_argument(
        "--name",
        default="",
        help="only resources of this id (fraud: the model with its versions and aliases, "
        "and the deployment and endpoint named fraud) or full name (models/fraud); "
        "wildcards allowed (fraud-*)",
    )
    p.add_argument(
        "--from",
        dest="start_revision",
        type=int,
        default=0,
        metavar="REVISION",
        help="replay the changes after this revision instead of the current state",
    )
    p = b.command(
        b.groups,
        "fleet",
        "the inference replicas and the versions each has loaded",
        "The inference replicas the router sends traffic to, whether they answer, and the "
        "versions each has loaded: state, device and memory.",
        _examples("modelhub fleet\nmodelhub fleet --model fraud --version 3 --json"),
    )
    p.add_argument("--model", default="", help="only the versions of this model (id)")
    p.add_argument("--version", default="", help="with --model: only this version number")
    _address(p, "router", 50053)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelhub",
        description="Publish, promote, route and watch ONNX models on ModelHub.",
        epilog=_examples(
            """modelhub models push fraud model.onnx --alias challenger
            modelhub alias set fraud champion 3
            modelhub endpoints apply fraud endpoint.json
            modelhub deployments apply fraud deployment.json --wait
            modelhub versions list fraud
            modelhub stats --endpoint fraud
            modelhub watch --kind endpoint
            modelhub score fraud@champion --input data.parquet --output scores.parquet"""
        )
        + "\n\n`modelhub COMMAND --help` explains each command.\n\n"
        + (__doc__ or "").split("\n\n", 1)[1].strip(),
        formatter_class=Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"modelhub {__version__}", help="print the version"
    )
    _global_options(parser, defaults=True)
    b = Builder(parser.add_subparsers(dest="group", required=True, metavar="COMMAND"))
    _models(b)
    _versions(b)
    _aliases(b)
    _deployments(b)
    _endpoints(b)
    _watch_and_fleet(b)
    _audit(b)
    _reports(b)
    score_cli.add_parser(b.groups, b.common)
    return parser


# ----------------------------------------------------------------------------- running


async def _score(s: Session) -> Output:
    return Output(await score_cli.run(s.client, s.args, s.bars))


COMMANDS: dict[str, Handler] = {
    "models": resources.models,
    "versions": resources.versions,
    "alias": resources.aliases,
    "deployments": resources.deployments,
    "endpoints": resources.endpoints,
    "watch": resources.watch,
    "fleet": fleet.fleet,
    "audit": monitor.audit,
    "stats": monitor.stats,
    "drift": monitor.drift,
    "experiment": monitor.experiment,
    "shadows": monitor.shadows,
    "alerts": monitor.alerts,
    "score": _score,
}


async def run(args: argparse.Namespace) -> Output:
    from modelhub.common.settings import TlsSettings

    with Bars(enabled=not args.quiet and terminal()) as bars:
        async with RegistryClient(args.registry, args.token, tls=TlsSettings()) as client:
            return await COMMANDS[args.group](Session(args, client, bars))


def _error(text: str, status: int) -> int:
    print(f"error: {text}", file=sys.stderr)
    return status


def _execute(args: argparse.Namespace) -> int:
    try:
        output = asyncio.run(run(args))
    except ClientError as exc:
        return _error(f"{exc.code.name}: {exc.message}", 1)
    except ModelHubError as exc:  # refused before or without a call (local work, --wait)
        code = status_code_for(type(exc))
        return _error(f"{code.name if code else exc.reason}: {exc.message}", 1)
    except MissingPackageError as exc:
        return _error(str(exc), 2)
    except BrokenPipeError:
        raise
    except (OSError, ValueError, json_format.ParseError) as exc:
        return _error(str(exc), 1)
    except KeyboardInterrupt:
        return 130
    text = output.render(args.json)
    if text:
        write(text)
    return 0


def _closed_pipe() -> int:
    """The reader of stdout went away (`modelhub models list | head -1`): end as other
    Unix tools do, by SIGPIPE, without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # nothing left for the interpreter to flush
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    return 128 + 13  # where there is no SIGPIPE: the status a shell reports for one


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _execute(args)
    except BrokenPipeError:
        return _closed_pipe()


if __name__ == "__main__":
    sys.exit(main())
