"""The wire types of the appliance's own calls: health, tokens, links,
audit events, TLS, disk keys and the box itself (see :mod:`paddock.models` for how they map
to ``docs/openapi.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ProtocolError
from .models import Egress

Scope = Literal["create", "exec", "files", "delete", "read", "admin"]
"""A token's scope; ``admin`` is all of them."""

SecretFormat = Literal["paddock", "e2b"]
KeyState = Literal["ready", "locked", "unavailable"]


@dataclass(frozen=True)
class Health:
    """``GET /v1/health``: ``status`` is ``"ok"`` or ``"degraded"``."""

    status: str
    state: str
    version: str
    workspaces: int
    uptime_s: int


@dataclass
class LinkRequest:
    from_: str = field(metadata={"wire": "from"})
    to: str
    port: int
    reason: str | None = None


@dataclass(frozen=True)
class Link:
    """A directed private link: ``from_`` may connect to ``to`` on
    ``port``, at ``to_address``."""

    id: str
    from_: str = field(metadata={"wire": "from"})
    to: str
    port: int
    created_at: int
    to_address: str | None = None


@dataclass(frozen=True)
class LinkList:
    links: list[Link]


@dataclass
class Quotas:
    """Caps on what a token's tree may hold at once (``None``: no cap of
    its own)."""

    max_workspaces: int | None = None
    max_vcpus: int | None = None
    max_memory_mib: int | None = None
    max_disk_mib: int | None = None
    max_ttl_s: int | None = None


ActionRule = Literal["deny", "ask", "allow"]
"""What a token may do about a yellow action: refused, asked for (an
admin approves it), or done."""


@dataclass
class ActionPolicy:
    """Which yellow actions a token that is not an admin may do or ask for
    (``actions`` of a token): a TTL past its ``max_ttl_s``, publishing a
    port, a link. A child's rule is never past its parent's."""

    extend_ttl: ActionRule = "deny"
    publish_port: ActionRule = "deny"
    link: ActionRule = "deny"


@dataclass
class TokenRequest:
    """``POST /v1/tokens``."""

    name: str
    scopes: list[Scope]
    ttl_s: int | None = None
    quotas: Quotas | None = None
    labels: dict[str, str] | None = None
    workspace_ids: list[str] | None = None
    egress_allow: Egress | None = None
    actions: ActionPolicy | None = None
    secret_format: SecretFormat | None = None


@dataclass(frozen=True)
class NewToken:
    """A token just minted. ``secret`` is shown this once (and left out of
    ``repr``)."""

    id: str
    secret: str = field(repr=False)
    scopes: list[Scope]
    expires_at: int | None
    note: str | None = None


@dataclass(frozen=True)
class Token:
    """A token as ``GET /v1/tokens`` shows it (never its secret)."""

    id: str
    name: str
    scopes: list[Scope]
    expires_at: int | None
    revoked: bool
    parent: str | None
    quotas: Quotas
    labels: dict[str, str]
    workspace_ids: list[str] | None = None
    egress_allow: Egress | None = None
    actions: ActionPolicy = field(default_factory=ActionPolicy)


@dataclass(frozen=True)
class TokenList:
    tokens: list[Token]


@dataclass(frozen=True)
class Revoked:
    revoked: str


@dataclass(frozen=True)
class TokenRotated:
    """A token's new secret, shown once (left out of ``repr``)."""

    id: str
    secret: str = field(repr=False)
    note: str


@dataclass(frozen=True)
class TlsRotated:
    """The API's new certificate's SHA-256 fingerprint (``AA:BB:...``)."""

    fingerprint: str
    note: str


@dataclass(frozen=True)
class KeyStatus:
    state: KeyState
    detail: str


@dataclass
class RecoverKeysRequest:
    recovery_secret: str = field(repr=False)


@dataclass(frozen=True)
class DiskUse:
    """A filesystem's size and use; ``available_bytes`` leaves out its reserve."""

    total_bytes: int
    used_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class HostSample:
    """One sample of the host, every 5 s: ``cpu_pct`` is of all its CPUs
    since the one before."""

    t: int
    cpu_pct: float
    cpus: int
    memory_used_bytes: int
    memory_total_bytes: int
    load1: float


@dataclass(frozen=True)
class HostMetrics:
    samples: list[HostSample]


SlotState = Literal["good", "trial", "bad", "empty"]


@dataclass(frozen=True)
class SlotInfo:
    """One image slot (``"a"`` or ``"b"``): its image's version, whether it
    is ``good`` (blessed), on ``trial`` (``tries_left``), ``bad`` or
    ``empty``, and whether this boot runs it."""

    slot: Literal["a", "b"]
    version: str | None
    state: SlotState
    tries_left: int | None
    booted: bool


UpdateState = Literal["writing", "ready", "failed"]


@dataclass(frozen=True)
class UpdateStatus:
    """An update going to ``slot``: ``writing``, ``ready`` (the next boot
    tries it; ``reboot_at`` when the box reboots into it, None: whenever it
    next reboots) or ``failed`` (``detail`` says why)."""

    version: str
    slot: Literal["a", "b"]
    state: UpdateState
    reboot_at: int | None
    detail: str | None


@dataclass(frozen=True)
class RestoreReport:
    """``POST /v1/system/restore``: what a backup put in place. The tokens
    are the backup's now (this box's own are gone); every workspace record
    is ``lost`` (a backup holds no disks). ``opened_with``: ``"tpm"`` or
    ``"recovery"``."""

    backup_created_at: int
    backup_version: str
    opened_with: Literal["tpm", "recovery"]
    tokens: int
    workspaces: int
    approvals: int
    audit_bytes: int


@dataclass(frozen=True)
class SystemStatus:
    """``GET /v1/system``: the box's version, uptime, the API certificate's
    fingerprint, its disk keys, data partition, newest host sample and its
    image slots."""

    version: str
    uptime_s: int
    tls_fingerprint: str | None
    keys: KeyStatus
    data: DiskUse
    host: HostSample | None
    slots: list[SlotInfo]
    update: UpdateStatus | None


@dataclass(frozen=True)
class Event:
    """An audit event: ``event`` (its kind, e.g. ``"exec_started"``), ``ts``
    (Unix seconds) and ``data``, every other field its kind records. The
    API document names only ``ts`` and ``event``; ``workspace`` and
    ``token`` are the fields its ``workspace=`` and ``token=`` filters
    match."""

    ts: float
    event: str
    data: dict[str, Any] = field(default_factory=dict, metadata={"sdk": True})

    @property
    def workspace(self) -> str | None:
        """The workspace it concerns, if any."""
        v = self.data.get("workspace")
        return v if isinstance(v, str) else None

    @property
    def token(self) -> str | None:
        """The id of the token that acted, if any."""
        v = self.data.get("token")
        return v if isinstance(v, str) else None

    def get(self, key: str, default: Any = None) -> Any:
        """One of the event's fields."""
        return self.data.get(key, default)

    @classmethod
    def _from_wire(cls, value: Any) -> Event:
        if not isinstance(value, dict):
            raise ProtocolError(f"an audit event is not a JSON object: {value!r:.200}")
        ts, kind = value.get("ts"), value.get("event")
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not isinstance(kind, str):
            raise ProtocolError(f"an audit event without ts and event: {value!r:.200}")
        rest = {k: v for k, v in value.items() if k not in ("ts", "event")}
        return cls(float(ts), kind, rest)


EVENT_FILTER_FIELDS = ("workspace", "token")
"""The event fields :class:`Event` reads beyond the schema's: the names of
``GET /v1/audit``'s filters (checked against the document)."""


@dataclass(frozen=True)
class AuditEvents:
    events: list[Event]
