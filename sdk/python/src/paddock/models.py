"""The wire types of a workspace's calls, as dataclasses.

Each class mirrors a schema of ``docs/openapi.yaml`` field for field (the
JSON key is the field's name, or ``metadata["wire"]``); which schema is
recorded in :data:`paddock._routes.ROUTES`, and ``tests/test_openapi.py``
checks that they agree. Answers are frozen; requests are plain dataclasses
the client fills from its keyword arguments. :class:`RunResult` and
:class:`Output` are the SDK's own (what an exec stream adds up to).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

User = Literal["agent", "root"]
"""Whose credentials the guest runs a command or checks a file call with."""

WorkspaceState = Literal["starting", "running", "stopped", "lost", "quarantined", "paused"]
FileKind = Literal["file", "dir", "symlink", "other"]
ForensicFileName = Literal["manifest", "memory", "disk", "audit", "network"]
SignalAction = Literal["record", "stop", "quarantine"]
SecretPlace = Literal["headers", "query", "body"]
"""Where in a request the egress proxy replaces a secret's placeholder."""


@dataclass
class Egress:
    """What a workspace may reach (``Egress``): ``domains`` such as
    ``"pypi.org"``, ``"*.example.com:443"``; ``cidrs`` such as
    ``"203.0.113.0/24:8080"``. Empty: nothing."""

    domains: list[str] = field(default_factory=list)
    cidrs: list[str] = field(default_factory=list)


@dataclass
class SignalRule:
    """One signal's rule (``SignalRule``): it fires at ``threshold`` (the
    signal's unit) within ``window_s`` seconds and then does ``action``
    (``"record"``, the default, ``"stop"`` or ``"quarantine"``) besides the
    audit event and metric; ``off=True`` never fires."""

    threshold: int
    window_s: int | None = None
    action: SignalAction | None = None
    off: bool | None = None


@dataclass
class SignalRules:
    """What a workspace is watched for (``SignalRules``); a signal left
    ``None`` keeps its default. ``denied_burst``: refused lookups,
    connections and packets (20 in 60 s); ``repeated_failure``: the same
    command failing (5 in 600 s); ``cpu_pinned``: CPU percent (95 for
    600 s); ``disk_full``: disk percent (95); ``outbound_rate``: lookups
    answered and connections let out (600 in 60 s)."""

    denied_burst: SignalRule | None = None
    repeated_failure: SignalRule | None = None
    cpu_pinned: SignalRule | None = None
    disk_full: SignalRule | None = None
    outbound_rate: SignalRule | None = None


@dataclass(repr=False)
class SecretSpec:
    """A brokered secret as it is given (``SecretSpec``): at create
    (``secrets``) or by :meth:`~paddock.Workspace.set_secret`. The egress
    proxy puts ``value`` into the workspace's requests to ``hosts`` (each on
    its egress allowlist); its commands only see a placeholder in the
    environment variable named after the secret.

    ``header`` (with ``format``, ``"{}"`` standing for the value, e.g.
    ``"Bearer {}"``) is set on every request to those hosts; ``replace_in``
    says where the placeholder is replaced (``["headers"]`` by default);
    ``allow_plain_http`` sends it over plain HTTP too; ``upstream_ca`` (PEM)
    is what the real hosts' certificates must chain to instead of the
    public roots. ``repr`` never shows the value."""

    value: str
    hosts: list[str]
    header: str | None = None
    format: str | None = None
    replace_in: list[SecretPlace] | None = None
    allow_plain_http: bool = False
    upstream_ca: str | None = None

    def __repr__(self) -> str:
        # As the API's own types print it: everything but the value.
        return (
            f"SecretSpec(value='(hidden)', hosts={self.hosts!r}, header={self.header!r}, "
            f"format={self.format!r}, replace_in={self.replace_in!r}, "
            f"allow_plain_http={self.allow_plain_http!r}, upstream_ca={self.upstream_ca is not None!r})"
        )


@dataclass(frozen=True)
class Secret:
    """A brokered secret as answers show it, never its value: the
    ``placeholder`` the workspace holds in the variable ``name``, and when
    its value was last set (``updated_at``, Unix seconds); ``upstream_ca``
    says whether it names its own CA."""

    name: str
    placeholder: str
    hosts: list[str]
    replace_in: list[SecretPlace]
    allow_plain_http: bool
    upstream_ca: bool
    updated_at: int
    header: str | None = None
    format: str | None = None


@dataclass(frozen=True)
class SecretList:
    """``GET .../secrets``: the secrets, and ``egress_ca``, the CA (PEM) the
    workspace trusts for brokered hosts (for tools in it that keep their
    own trust store)."""

    secrets: list[Secret]
    egress_ca: str


@dataclass(frozen=True)
class SecretRemoved:
    workspace: str
    removed: str


@dataclass
class WorkspaceSpec:
    """``POST /v1/workspaces`` (``WorkspaceSpec``); ``None`` leaves a field to
    the appliance's default."""

    ttl_s: int
    template: str | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    disk_mib: int | None = None
    disk_mib_per_s: int | None = None
    disk_iops: int | None = None
    egress: Egress | None = None
    net_mib_per_s: int | None = None
    net_connections_per_s: int | None = None
    signals: SignalRules | None = None
    env: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    secrets: dict[str, SecretSpec] | None = None


@dataclass(frozen=True)
class WorkspaceLimits:
    """What the host enforces on a workspace (cgroup, VMM, firewall)."""

    cpu_max_us_per_100ms: int
    memory_max_bytes: int
    pids_max: int
    io_max_bytes_per_s: int
    io_max_ops_per_s: int
    disk_bytes_per_s: int | None = None
    disk_ops_per_s: int | None = None
    net_bytes_per_s: int | None = None
    net_connections_per_s: int | None = None


@dataclass(frozen=True)
class PublishedPort:
    """A workspace ``port`` reachable at the appliance's ``host_port``;
    ``published_by`` is the approval that gave it or the token that
    published it."""

    port: int
    host_port: int
    published_by: str | None = None


@dataclass(frozen=True)
class WorkspaceInfo:
    """A workspace as the API shows it (``Workspace``); env values never
    appear, only ``env_keys``, nor secrets', only their names (``secrets``).
    Times are Unix seconds."""

    id: str
    template: str
    vcpus: int
    memory_mib: int
    disk_mib: int
    labels: dict[str, str]
    env_keys: list[str]
    created_at: int
    expires_at: int
    state: WorkspaceState
    limits: WorkspaceLimits
    egress: Egress = field(default_factory=Egress)
    published: list[PublishedPort] = field(default_factory=list)
    address: str | None = None
    disk_encrypted: bool | None = None
    signals: SignalRules | None = None
    secrets: list[str] = field(default_factory=list)
    paused_at: int | None = None
    """When it was paused (paused workspaces only)."""
    resume_ttl_s: int | None = None
    """The TTL it gets back when resumed (paused workspaces only)."""


@dataclass(frozen=True)
class WorkspaceList:
    workspaces: list[WorkspaceInfo]


@dataclass(frozen=True)
class Deleted:
    """The answer to a removal: what was removed."""

    deleted: str


@dataclass
class PauseRequest:
    """``POST /v1/workspaces/{id}/pause``: how long it may stay paused."""

    ttl_s: int | None = None


@dataclass
class TtlRequest:
    ttl_s: int
    reason: str | None = None


@dataclass
class LimitsRequest:
    """``POST /v1/workspaces/{id}/limits``: any of them."""

    disk_mib_per_s: int | None = None
    disk_iops: int | None = None
    net_mib_per_s: int | None = None
    net_connections_per_s: int | None = None


@dataclass
class PortRequest:
    port: int
    host_port: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PortPublished:
    """A published port: ``workspace``'s ``port`` at the appliance's
    ``host_port``."""

    workspace: str
    port: int
    host_port: int


@dataclass(frozen=True)
class ForensicFile:
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ForensicFiles:
    """The files of a snapshot, each downloaded by its field's name."""

    memory: ForensicFile
    disk: ForensicFile
    audit: ForensicFile
    network: ForensicFile | None = None
    """Absent from snapshots taken before the network record existed."""

    def get(self, name: str) -> ForensicFile | None:
        """A file by the name its download takes."""
        return getattr(self, name, None) if name in ("memory", "disk", "audit", "network") else None

    def __getitem__(self, name: str) -> ForensicFile:
        """``files["memory"]``, as when ``files`` was a mapping."""
        f = self.get(name)
        if f is None:
            raise KeyError(name)
        return f


@dataclass(frozen=True)
class ForensicManifest:
    """What a forensic snapshot holds: each file's size and SHA-256."""

    workspace: WorkspaceInfo
    taken_at: int
    taken_by: str
    files: ForensicFiles
    encrypted: bool
    encryption: str | None = None


@dataclass(frozen=True)
class Quarantined:
    """The answer to a quarantine."""

    workspace: WorkspaceInfo
    revoked_tokens: list[str]
    snapshot: ForensicManifest


@dataclass
class ExecRequest:
    """``POST /v1/workspaces/{id}/exec``; ``stdin`` is base64."""

    argv: list[str]
    env: dict[str, str] | None = None
    cwd: str | None = None
    user: User | None = None
    timeout_s: int | None = None
    stdin: str | None = None


@dataclass
class PtySize:
    """A terminal's size in character cells."""

    cols: int
    rows: int


@dataclass
class ProcessRequest:
    """``POST /v1/workspaces/{id}/processes``."""

    argv: list[str]
    env: dict[str, str] | None = None
    cwd: str | None = None
    user: User | None = None
    tag: str | None = None
    pty: PtySize | None = None
    stdin: bool | None = None
    timeout_s: int | None = None


@dataclass
class SignalRequest:
    signal: int


@dataclass(frozen=True)
class ProcessInfo:
    """A running process (``GET .../processes``); never its environment."""

    pid: int
    tag: str | None
    argv: list[str]
    cwd: str
    pty: bool


@dataclass(frozen=True)
class ProcessList:
    processes: list[ProcessInfo]


@dataclass(frozen=True)
class FileWritten:
    """The answer to an upload: its path, size and octal mode."""

    path: str
    bytes: int
    mode: str


@dataclass(frozen=True)
class FileEntry:
    """One directory entry; ``mode`` is octal (``"644"``), ``mtime`` Unix
    seconds."""

    name: str
    kind: FileKind
    size: int
    mode: str
    uid: int
    gid: int
    mtime: int


@dataclass(frozen=True)
class DirListing:
    path: str
    entries: list[FileEntry]


@dataclass(frozen=True)
class DirCreated:
    created: str


@dataclass(frozen=True)
class WorkspaceSample:
    """One metrics sample; ``cpu_pct`` is of its vCPUs since the one before."""

    t: int
    cpu_pct: float
    vcpus: int
    memory_bytes: int
    memory_limit_bytes: int
    disk_used_bytes: int
    disk_bytes: int
    net_sent_bytes: int = 0
    """Bytes its NIC sent since it started (a counter)."""
    net_received_bytes: int = 0


@dataclass(frozen=True)
class WorkspaceMetrics:
    samples: list[WorkspaceSample]


@dataclass(frozen=True)
class Output:
    """A piece of a command's output as it arrived: ``stream`` is
    ``"stdout"`` or ``"stderr"`` (a terminal's output is all stdout)."""

    stream: Literal["stdout", "stderr"]
    data: bytes

    @property
    def text(self) -> str:
        """``data`` as UTF-8 (undecodable bytes replaced)."""
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True)
class RunResult:
    """How a command ended, and what it wrote.

    ``exit_code`` is ``None`` when a signal ended it (``signal``, e.g. 9
    after a timeout, then ``timed_out`` is true). ``stdout`` and ``stderr``
    are the output decoded as UTF-8; ``stdout_bytes`` and ``stderr_bytes``
    the exact bytes.
    """

    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration_ms: int
    stdout_bytes: bytes = field(default=b"", repr=False)
    stderr_bytes: bytes = field(default=b"", repr=False)

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """Whether it exited with code 0."""
        return self.exit_code == 0

    def check(self) -> RunResult:
        """This result, or :class:`~paddock.errors.CommandFailed` unless it
        exited with code 0."""
        if not self.ok:
            from .errors import CommandFailed

            raise CommandFailed(self)
        return self

    def __repr__(self) -> str:
        out = self.stdout[:60]
        return (
            f"RunResult(exit_code={self.exit_code}, signal={self.signal}, "
            f"timed_out={self.timed_out}, duration_ms={self.duration_ms}, stdout={out!r}"
            f"{'...' if len(self.stdout) > 60 else ''})"
        )

