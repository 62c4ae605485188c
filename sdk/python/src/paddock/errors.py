"""The exceptions the SDK raises.

Every one derives from :class:`PaddockError`. A refusal from the appliance
is an :class:`ApiError` (a subclass per status the API documents) whose
``str()`` is ``"<status> <code>: <the API's message>"``: the message is the
``error`` field of the API's JSON error body (``{"error": "..."}``, the only
field that body has), or the body's text when it is not that JSON.
"""

from __future__ import annotations

import json
from typing import Any, TYPE_CHECKING

if TYPE_CHECKING:
    from .models import RunResult


class PaddockError(Exception):
    """The base of every exception this SDK raises."""


class ConfigError(PaddockError, ValueError):
    """The client was given something it cannot use: a URL that is not
    ``https://HOST[:PORT]``, a malformed fingerprint, a missing setting."""


class ConnectionFailed(PaddockError):
    """The appliance could not be reached, or the connection broke
    (wraps the transport's exception, kept as ``__cause__``)."""


class RequestTimeout(ConnectionFailed):
    """A connect, a read or a write took longer than its timeout."""


class ProtocolError(PaddockError):
    """An answer that is malformed or was cut off before its end (a body
    short of its length, a stream without its last chunk or exit line)."""


class PinMismatch(PaddockError):
    """The appliance presented a certificate other than the pinned one.

    Nothing authenticated was sent: the pinned certificate is checked
    before any request that carries the token.
    """

    def __init__(self, expected: str, presented: str | None, detail: str = "") -> None:
        self.expected = expected
        self.presented = presented
        seen = presented if presented else "a certificate that failed verification"
        msg = f"the appliance presented {seen}, not the pinned {expected}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class ExecError(PaddockError):
    """A command or a process watch failed on the workspace's side: the
    stream ended with ``{"error": ...}`` instead of an exit status."""

    def __init__(self, message: str, duration_ms: int = 0) -> None:
        self.message = message
        self.duration_ms = duration_ms
        super().__init__(message)


class CommandFailed(PaddockError):
    """``run(..., check=True)`` saw a command end other than with code 0."""

    def __init__(self, result: RunResult) -> None:
        self.result = result
        if result.timed_out:
            how = "timed out"
        elif result.exit_code is not None:
            how = f"exited with code {result.exit_code}"
        else:
            how = f"was ended by signal {result.signal}"
        tail = result.stderr.strip()[-500:]
        super().__init__(f"the command {how}" + (f": {tail}" if tail else ""))


class ApprovalPending(PaddockError):
    """The call was not done: this token's policy (``actions``) lets it
    only ask, so the appliance recorded it as a pending approval (202) for
    an admin to decide. ``approval`` is it (a
    :class:`paddock.Approval`); ``client.approval(id)`` follows it,
    ``client.wait_for_approval(id)`` waits for the decision."""

    def __init__(self, approval: Any) -> None:
        self.approval = approval
        super().__init__(f"approval {approval.id} ({approval.kind}) waits for an admin")


class ApiError(PaddockError):
    """The appliance answered with an error status.

    Attributes:
        status: the HTTP status (e.g. 404).
        code: a short stable name for the status (``"not_found"``); the API
            itself sends none, so it is derived from ``status``.
        message: the API's message (its error body's ``error`` field).
    """

    status: int = 0
    code: str = "error"

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")


class BadRequest(ApiError):
    """400: malformed HTTP, JSON or query."""


class Unauthorized(ApiError):
    """401: no token, or an invalid, expired or revoked one."""


class Forbidden(ApiError):
    """403: the token lacks the scope, or may not see that workspace (the
    same answer whether or not it exists)."""


class NotFound(ApiError):
    """404: no such endpoint, workspace, token, file or process (shown
    only to tokens that could see it)."""


class Conflict(ApiError):
    """409: a quota or the appliance's capacity would be exceeded, the
    workspace is not running, or the thing already exists."""


class PayloadTooLarge(ApiError):
    """413: the body or request head is over its cap."""


class InvalidRequest(ApiError):
    """422: fields out of range, unknown or missing (all named at once)."""


class RateLimited(ApiError):
    """429: the tenant has as many requests in flight as it may, or this
    address failed authentication too often; retry later.

    ``retry_after`` is the ``Retry-After`` header in seconds, when the
    answer carried one (the appliance currently sends none).
    """

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class Unavailable(ApiError):
    """503 (or 504): the API, host-init or the workspace's agent could not
    do it now, or a connection or call limit was reached; retry shortly."""


_BY_STATUS: dict[int, tuple[type[ApiError], str]] = {
    400: (BadRequest, "bad_request"),
    401: (Unauthorized, "unauthorized"),
    403: (Forbidden, "forbidden"),
    404: (NotFound, "not_found"),
    405: (ApiError, "method_not_allowed"),
    409: (Conflict, "conflict"),
    411: (ApiError, "length_required"),
    413: (PayloadTooLarge, "too_large"),
    422: (InvalidRequest, "invalid"),
    429: (RateLimited, "rate_limited"),
    500: (ApiError, "internal"),
    503: (Unavailable, "unavailable"),
    504: (Unavailable, "timeout"),
    507: (ApiError, "insufficient_storage"),
}


def message_of(body: bytes) -> str:
    """The API's message in an error body: its ``error`` field, else the
    body's text (a proxy's page, say), else ``"(an empty answer)"``."""
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return str(value["error"])
    text = body.decode("utf-8", "replace").strip()
    return text[:2000] if text else "(an empty answer)"


def api_error(status: int, body: bytes, retry_after: str | None = None) -> ApiError:
    """The exception for an error answer with ``status`` and ``body``."""
    cls, code = _BY_STATUS.get(status, (ApiError, f"http_{status}"))
    msg = message_of(body)
    if cls is RateLimited:
        seconds: float | None = None
        if retry_after is not None:
            try:
                seconds = float(retry_after)
            except ValueError:
                seconds = None
        return RateLimited(status, code, msg, seconds)
    return cls(status, code, msg)
