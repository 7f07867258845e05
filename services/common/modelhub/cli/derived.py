"""`modelhub versions optimize|report`: optimized derivatives. The work is done by
`modelhub.optimize` (the modelhub-inference package), imported only when these run."""

from __future__ import annotations

from modelhub.cli.output import Output
from modelhub.cli.session import Session, inference_unit
from modelhub.common.errors import FailedPreconditionError


async def optimize(s: Session) -> Output:
    with inference_unit():
        from modelhub.optimize.cli import optimize as build

    args = s.args
    done = await build(
        s.client,
        args.reference,
        args.method,
        calibration=args.calibration,
        validation=args.validation,
        alias=args.alias,
        shadow_on=args.shadow_on,
        shadow_rate=args.shadow_rate,
        rows=args.rows,
        threads=args.threads,
        say=s.say,
        progress=s.bars,
    )
    version = done.version
    head = f"registered {version.name} ({args.method} of {version.derivation.parent})"
    return Output.of(version, "\n".join([head, *done.report.lines(), *done.notes]))


async def report(s: Session) -> Output:
    with inference_unit():
        from modelhub.optimize.cli import report_from_pb

    version = await s.client.resolve(s.args.reference)
    if not version.HasField("derivation"):
        raise FailedPreconditionError(
            f"{version.name} is not an optimized derivative: it has no report"
        )
    lines = [f"{version.name}: {version.derivation.method} of {version.derivation.parent}"]
    if version.HasField("evaluation"):
        lines += report_from_pb(version).lines()
    return Output.of(version, "\n".join(lines))
