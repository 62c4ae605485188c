"""The wire types of what a person reviews of a workspace: where it
connected (``GET .../network``) and its report (``GET .../report``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .models import FileKind, WorkspaceInfo

Decision = Literal["allowed", "denied"]
NetKind = Literal["dns", "tcp"]


@dataclass(frozen=True)
class NetworkRecord:
    """What the resolver (``kind`` dns) or the egress proxy (tcp) saw of one
    name, destination and decision over a window of up to a minute
    (``from_`` to ``to``, Unix seconds). Never payloads."""

    from_: int = field(metadata={"wire": "from"})
    to: int
    kind: NetKind
    name: str
    decision: Decision
    reason: str
    count: int
    dest: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    upstream_failed: int = 0
    mismatched: int = 0
    answers: list[str] = field(default_factory=list)
    secrets_injected: int = 0
    """Requests the egress proxy put a brokered secret into."""
    secret_misuse: int = 0
    """Requests refused for carrying a secret's placeholder where it may
    not go."""


@dataclass(frozen=True)
class NetworkLog:
    records: list[NetworkRecord]


@dataclass(frozen=True)
class CommandRun:
    """How one command ended: ``at`` (Unix seconds), its ``argv0``, exit
    code or signal, and how long it ran."""

    at: int
    argv0: str
    exit_code: int | None
    signal: int | None
    duration_ms: int


@dataclass(frozen=True)
class FiredSignal:
    at: int
    signal: str
    value: int
    action: str


@dataclass(frozen=True)
class Destination:
    name: str
    kind: NetKind
    decision: Decision
    count: int
    bytes_up: int
    bytes_down: int


@dataclass(frozen=True)
class NetworkSummary:
    lookups_allowed: int
    lookups_denied: int
    connections_allowed: int
    connections_denied: int
    bytes_up: int
    bytes_down: int
    mismatched: int
    destinations: list[Destination]


@dataclass(frozen=True)
class FileChange:
    path: str
    change: Literal["added", "modified", "deleted"]
    kind: FileKind
    size: int


@dataclass(frozen=True)
class FileChanges:
    """What it changed on its disk against its template; ``unavailable``
    says why there is no list (not running, or no exec scope)."""

    changes: list[FileChange]
    truncated: bool
    unavailable: str | None = None


@dataclass(frozen=True)
class WorkspaceReport:
    """What a person reviews before trusting what came out of a workspace."""

    workspace: WorkspaceInfo
    generated_at: int
    commands_started: int
    commands: list[CommandRun]
    signals: list[FiredSignal]
    network: NetworkSummary
    files: FileChanges


ApprovalState = Literal["pending", "approved", "denied", "expired"]
ApprovalKind = Literal["egress", "extend_ttl", "publish_port", "link"]


@dataclass(frozen=True)
class Approval:
    """What was asked for one workspace, and what became of it: a
    destination the workspace asked for (``kind`` egress, at
    ``http://paddock.internal/egress-requests``), or an action a token's
    policy let it only ask for (extend_ttl, publish_port, link). The
    fields of ``kind`` are set; the others are ``None``."""

    id: str
    workspace: str
    kind: ApprovalKind
    reason: str
    state: ApprovalState
    asked_at: int
    asks: int
    host: str | None = None
    port: int | None = None
    ttl_s: int | None = None
    host_port: int | None = None
    to: str | None = None
    link: str | None = None
    asked_by: str | None = None
    decided_by: str | None = None
    decided_at: int | None = None
    decision_reason: str | None = None
    expires_at: int | None = None


@dataclass(frozen=True)
class ApprovalList:
    approvals: list[Approval]


@dataclass
class ApprovalDecision:
    approve: bool
    ttl_s: int | None = None
    reason: str | None = None
