"""Domain exceptions shared by every service.

They say what went wrong in domain terms and carry no transport codes: the one table in
`modelhub.common.status` turns each class into a gRPC status. Raise the most specific class;
`reason` is a stable UPPER_SNAKE identifier clients may switch on (it becomes
`google.rpc.ErrorInfo.reason`), `metadata` adds machine-readable context.
"""

from __future__ import annotations

from collections.abc import Mapping


class ModelHubError(Exception):
    """Base class of every error a ModelHub service reports to its callers."""

    default_reason = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class FieldViolation:
    """One bad field of a request: which field, and what is wrong with it."""

    __slots__ = ("description", "field")

    def __init__(self, field: str, description: str) -> None:
        self.field = field
        self.description = description

    def __repr__(self) -> str:
        return f"FieldViolation({self.field!r}, {self.description!r})"


class InvalidArgumentError(ModelHubError):
    """The request itself is wrong (bad name, shape, datatype, payload, value)."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        violations: list[FieldViolation] | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = list(violations or [])
        if field is not None and not self.violations:
            self.violations.append(FieldViolation(field, message))


class InvalidArtifactError(InvalidArgumentError):
    """An uploaded artifact is not a valid model (not ONNX, truncated, fails the checker)."""

    default_reason = "INVALID_ARTIFACT"


class DigestMismatchError(InvalidArgumentError):
    """The bytes received do not have the digest the client declared."""

    default_reason = "DIGEST_MISMATCH"


class NotFoundError(ModelHubError):
    """A named resource does not exist."""

    default_reason = "NOT_FOUND"


class AlreadyExistsError(ModelHubError):
    """A resource with that name exists already."""

    default_reason = "ALREADY_EXISTS"


class FailedPreconditionError(ModelHubError):
    """The system is not in a state that allows the operation (e.g. still in use)."""

    default_reason = "FAILED_PRECONDITION"


class InUseError(FailedPreconditionError):
    """The resource is referenced by another one (a deployment, an endpoint)."""

    default_reason = "IN_USE"


class SchemaOutdatedError(FailedPreconditionError):
    """The database schema is older than the code: run the migrations first."""

    default_reason = "SCHEMA_OUTDATED"


class ConflictError(ModelHubError):
    """A concurrent change won: the etag sent no longer matches."""

    default_reason = "ETAG_MISMATCH"


class RevisionCompactedError(ModelHubError):
    """A watch asked for history that is no longer kept: re-list from revision 0."""

    default_reason = "REVISION_COMPACTED"


class ResourceExhaustedError(ModelHubError):
    """A capacity limit was hit (queue full, budget spent)."""

    default_reason = "RESOURCE_EXHAUSTED"


class QueueFullError(ResourceExhaustedError):
    """A bounded queue is full: the request was refused at once, not queued."""

    default_reason = "QUEUE_FULL"


class PayloadTooLargeError(ResourceExhaustedError):
    """A payload is larger than the configured limit."""

    default_reason = "PAYLOAD_TOO_LARGE"


class DeadlineExpiredError(ModelHubError):
    """The request's deadline passed before the work could be done."""

    default_reason = "DEADLINE_EXPIRED"


class UnavailableError(ModelHubError):
    """A dependency (backend, database, model) is not reachable or not ready; retry later."""

    default_reason = "UNAVAILABLE"


class ModelNotReadyError(UnavailableError):
    """The model version exists but is not loaded and ready to serve here."""

    default_reason = "MODEL_NOT_READY"


class UnauthenticatedError(ModelHubError):
    """No valid credentials were presented."""

    default_reason = "UNAUTHENTICATED"


class PermissionDeniedError(ModelHubError):
    """The caller is known but its role does not allow the operation."""

    default_reason = "PERMISSION_DENIED"


class CancelledError(ModelHubError):
    """The caller went away before the operation finished."""

    default_reason = "CANCELLED"


class InternalError(ModelHubError):
    """A bug or broken invariant on the server side."""

    default_reason = "INTERNAL"


def all_error_classes() -> list[type[ModelHubError]]:
    """Every ModelHubError subclass defined anywhere (for the mapping completeness test)."""
    found: list[type[ModelHubError]] = []
    stack: list[type[ModelHubError]] = [ModelHubError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found
