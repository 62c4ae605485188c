"""Python SDK for Paddock, an appliance that runs microVM workspaces for AI
agents behind an authenticated HTTPS API (docs/api.md).

    from paddock import Paddock

    with Paddock.from_env() as client:              # PADDOCK_URL, _TOKEN, _FINGERPRINT
        with client.create_workspace(ttl_s=600) as ws:   # deleted on exit
            print(ws.run("uname -sr").stdout)

:class:`Paddock` blocks; :class:`AsyncPaddock` is the same for asyncio.
See ``sdk/python/README.md`` for the reference.
"""

from ._http import __version__
from ._pin import fingerprint_of, normalize_fingerprint
from .admin_models import (
    ActionPolicy,
    Event,
    DiskUse,
    Health,
    HostSample,
    KeyStatus,
    Link,
    NewToken,
    Quotas,
    Scope,
    RestoreReport,
    SystemStatus,
    TlsRotated,
    Token,
    TokenRotated,
)
from .aio import AsyncPaddock, CreatingWorkspace
from .aio_process import AsyncProcess
from .aio_workspace import AsyncWorkspace
from .client import Paddock, fetch_fingerprint
from .errors import (
    ApiError,
    ApprovalPending,
    BadRequest,
    CommandFailed,
    ConfigError,
    Conflict,
    ConnectionFailed,
    ExecError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PaddockError,
    PayloadTooLarge,
    PinMismatch,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    Unauthorized,
    Unavailable,
)
from .models import (
    Egress,
    FileEntry,
    FileWritten,
    ForensicFiles,
    ForensicManifest,
    Output,
    PortPublished,
    ProcessInfo,
    PtySize,
    Quarantined,
    RunResult,
    Secret,
    SecretList,
    SecretSpec,
    SignalRule,
    SignalRules,
    WorkspaceInfo,
    WorkspaceLimits,
    WorkspaceSample,
)
from .process import Process
from .review_models import Approval, NetworkRecord, WorkspaceReport
from .workspace import Workspace

__all__ = [
    "__version__",
    "Paddock",
    "AsyncPaddock",
    "Workspace",
    "AsyncWorkspace",
    "CreatingWorkspace",
    "Process",
    "AsyncProcess",
    "fetch_fingerprint",
    "fingerprint_of",
    "normalize_fingerprint",
    # models
    "Egress",
    "FileEntry",
    "FileWritten",
    "ForensicFiles",
    "ForensicManifest",
    "Output",
    "PortPublished",
    "ProcessInfo",
    "PtySize",
    "Quarantined",
    "RunResult",
    "Secret",
    "SecretList",
    "SecretSpec",
    "SignalRule",
    "SignalRules",
    "WorkspaceInfo",
    "WorkspaceLimits",
    "WorkspaceSample",
    "Approval",
    "NetworkRecord",
    "WorkspaceReport",
    "Event",
    "DiskUse",
    "Health",
    "HostSample",
    "KeyStatus",
    "Link",
    "NewToken",
    "Quotas",
    "ActionPolicy",
    "Scope",
    "RestoreReport",
    "SystemStatus",
    "TlsRotated",
    "Token",
    "TokenRotated",
    # errors
    "PaddockError",
    "ConfigError",
    "ConnectionFailed",
    "RequestTimeout",
    "ProtocolError",
    "PinMismatch",
    "ExecError",
    "CommandFailed",
    "ApprovalPending",
    "ApiError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "InvalidRequest",
    "RateLimited",
    "Unavailable",
]
