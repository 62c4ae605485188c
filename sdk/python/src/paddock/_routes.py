"""Every API call the SDK makes: method, path template (as in
``docs/openapi.yaml``), the query parameters it may send, its request body
and its answer.

The clients go through this table for every request (the transport
refuses a route, a query parameter or a body type not declared here), so
``tests/test_openapi.py``, which checks the table against the document,
checks what the code really sends and reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import admin_models as a
from . import models as m
from . import review_models as r

Answer = Literal["json", "none", "ndjson", "bytes", "text"]


@dataclass(frozen=True)
class Route:
    """One API call.

    ``body`` is the request's JSON model (a dataclass), ``raw_body`` marks
    an ``application/octet-stream`` body; ``answer`` says what comes back
    (``"json"``: the ``model`` dataclass; ``"none"``: a JSON object nothing
    is read from; ``"ndjson"``: an exec/process stream; ``"bytes"``: a
    download; ``"text"``: Prometheus text).
    """

    method: str
    path: str
    answer: Answer = "json"
    model: type | None = None
    body: type | None = None
    raw_body: bool = False
    query: tuple[str, ...] = ()
    asks: bool = False
    """A token's policy may turn it into an ask: a 202 with the pending
    approval, raised as :class:`paddock.ApprovalPending`."""


_W = "/v1/workspaces/{id}"
_P = _W + "/processes/{pid}"

ROUTES: dict[str, Route] = {
    "health": Route("GET", "/v1/health", model=a.Health),
    "create_workspace": Route("POST", "/v1/workspaces", model=m.WorkspaceInfo, body=m.WorkspaceSpec),
    "list_workspaces": Route("GET", "/v1/workspaces", model=m.WorkspaceList, query=("label",)),
    "get_workspace": Route("GET", _W, model=m.WorkspaceInfo),
    "delete_workspace": Route("DELETE", _W, model=m.Deleted),
    "stop_workspace": Route("POST", _W + "/stop", model=m.WorkspaceInfo),
    "pause_workspace": Route("POST", _W + "/pause", model=m.WorkspaceInfo, body=m.PauseRequest),
    "resume_workspace": Route("POST", _W + "/resume", model=m.WorkspaceInfo),
    "set_ttl": Route("POST", _W + "/ttl", model=m.WorkspaceInfo, body=m.TtlRequest, asks=True),
    "set_limits": Route("POST", _W + "/limits", model=m.WorkspaceInfo, body=m.LimitsRequest),
    "publish_port": Route("POST", _W + "/ports", model=m.PortPublished, body=m.PortRequest, asks=True),
    "unpublish_port": Route("DELETE", _W + "/ports/{port}", model=m.WorkspaceInfo),
    "set_egress": Route("PUT", _W + "/egress", model=m.WorkspaceInfo, body=m.Egress),
    "quarantine": Route("POST", _W + "/quarantine", model=m.Quarantined),
    "delete_forensics": Route("DELETE", _W + "/forensics", model=m.Deleted),
    "forensic_file": Route("GET", _W + "/forensics/{file}", answer="bytes"),
    "metrics": Route("GET", _W + "/metrics", model=m.WorkspaceMetrics, query=("since",)),
    "network_log": Route("GET", _W + "/network", model=r.NetworkLog, query=("since", "decision", "limit")),
    "report": Route("GET", _W + "/report", model=r.WorkspaceReport),
    "list_secrets": Route("GET", _W + "/secrets", model=m.SecretList),
    "set_secret": Route("PUT", _W + "/secrets/{name}", model=m.Secret, body=m.SecretSpec),
    "remove_secret": Route("DELETE", _W + "/secrets/{name}", model=m.SecretRemoved),
    "exec": Route("POST", _W + "/exec", answer="ndjson", body=m.ExecRequest),
    "start_process": Route("POST", _W + "/processes", answer="ndjson", body=m.ProcessRequest),
    "list_processes": Route("GET", _W + "/processes", model=m.ProcessList),
    "watch_process": Route("GET", _P + "/output", answer="ndjson"),
    "process_input": Route("POST", _P + "/input", answer="none", raw_body=True),
    "close_input": Route("POST", _P + "/close-input", answer="none"),
    "signal_process": Route("POST", _P + "/signal", answer="none", body=m.SignalRequest),
    "resize_process": Route("POST", _P + "/resize", answer="none", body=m.PtySize),
    "upload_file": Route(
        "PUT", _W + "/files", model=m.FileWritten, raw_body=True, query=("path", "mode", "user")
    ),
    "download_file": Route("GET", _W + "/files", answer="bytes", query=("path", "user")),
    "remove_file": Route("DELETE", _W + "/files", model=m.Deleted, query=("path", "recursive", "user")),
    "list_dir": Route("GET", _W + "/dir", model=m.DirListing, query=("path", "user")),
    "make_dir": Route("POST", _W + "/dir", model=m.DirCreated, query=("path", "mode", "user")),
    "list_links": Route("GET", "/v1/links", model=a.LinkList),
    "create_link": Route("POST", "/v1/links", model=a.Link, body=a.LinkRequest, asks=True),
    "delete_link": Route("DELETE", "/v1/links/{link}", model=m.Deleted),
    "create_token": Route("POST", "/v1/tokens", model=a.NewToken, body=a.TokenRequest),
    "list_tokens": Route("GET", "/v1/tokens", model=a.TokenList),
    "revoke_token": Route("DELETE", "/v1/tokens/{id}", model=a.Revoked),
    "rotate_token": Route("POST", "/v1/tokens/{id}/rotate", model=a.TokenRotated),
    "rotate_tls": Route("POST", "/v1/tls/rotate", model=a.TlsRotated),
    "key_status": Route("GET", "/v1/keys", model=a.KeyStatus),
    "recover_keys": Route("POST", "/v1/keys/recover", model=a.KeyStatus, body=a.RecoverKeysRequest),
    "system": Route("GET", "/v1/system", model=a.SystemStatus),
    "host_metrics": Route("GET", "/v1/system/metrics", model=a.HostMetrics, query=("since",)),
    "system_update": Route("POST", "/v1/system/update", model=a.UpdateStatus, raw_body=True, query=("at", "force")),
    "system_backup": Route("GET", "/v1/system/backup", answer="bytes"),
    "system_restore": Route("POST", "/v1/system/restore", model=a.RestoreReport, raw_body=True),
    "list_approvals": Route("GET", "/v1/approvals", model=r.ApprovalList, query=("state",)),
    "get_approval": Route("GET", "/v1/approvals/{id}", model=r.Approval),
    "decide_approval": Route("POST", "/v1/approvals/{id}", model=r.Approval, body=r.ApprovalDecision),
    "audit": Route("GET", "/v1/audit", model=a.AuditEvents, query=("event", "workspace", "token", "limit")),
    "prometheus": Route("GET", "/metrics", answer="text"),
}
