"""Field violations gathered rather than raised: validators that report every problem of
an input at once (a data profile, an events batch, an alert rule) return lists of
`FieldViolation`, and callers that refuse the whole input raise one `violations_error`."""

from __future__ import annotations

from collections.abc import Sequence

from modelhub.common.errors import FieldViolation, InvalidArgumentError


def prefixed(violations: Sequence[FieldViolation], prefix: str) -> list[FieldViolation]:
    """`violations` with `prefix` (e.g. "events[3]") prepended to every field path."""
    return [
        FieldViolation(f"{prefix}.{v.field}" if v.field else prefix, v.description)
        for v in violations
    ]


def violations_error(violations: Sequence[FieldViolation], what: str) -> InvalidArgumentError:
    """One INVALID_ARGUMENT listing every violation (the message shows the first few)."""
    shown = "; ".join(f"{v.field}: {v.description}" for v in violations[:5])
    more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
    return InvalidArgumentError(
        f"invalid {what}: {shown}{more}; nothing was stored", violations=list(violations)
    )
