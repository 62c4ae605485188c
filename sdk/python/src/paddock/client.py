"""The blocking client: :class:`Paddock`."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from . import _build, config
from ._http import SyncTransport, parse_url
from ._pin import fetch_certificate, fingerprint_of
from .admin_models import (
    ActionPolicy,
    ActionRule,
    AuditEvents,
    Event,
    Health,
    HostMetrics,
    HostSample,
    KeyStatus,
    Link,
    LinkList,
    LinkRequest,
    NewToken,
    Quotas,
    RecoverKeysRequest,
    RestoreReport,
    Revoked,
    Scope,
    SystemStatus,
    UpdateStatus,
    SecretFormat,
    TlsRotated,
    Token,
    TokenList,
    TokenRotated,
)
from .models import Egress, SecretSpec, SignalRules, WorkspaceInfo, WorkspaceList
from .errors import RequestTimeout
from .review_models import Approval, ApprovalDecision, ApprovalList, ApprovalState
from .workspace import Workspace, read_chunks, save_atomically

DEFAULT_TIMEOUT = 60.0
"""Seconds an ordinary call may take (connect, each read, each write)."""

CREATE_TIMEOUT = 300.0
"""Seconds a create may take: it answers once the workspace has booted."""


class Paddock:
    """A client of one appliance, blocking (see :class:`paddock.AsyncPaddock`
    for asyncio). Thread-safe; close it (or use ``with``) when done.

    Args:
        url: ``https://HOST[:PORT]`` (port 8443 when absent).
        token: a token secret (``pdk_...``), sent as ``Authorization: Bearer``.
        fingerprint: the SHA-256 fingerprint of the appliance's certificate
            (``AA:BB:...`` as its console shows it, any case, colons
            optional). With it, the certificate is checked before the token
            is ever sent, and a different one raises
            :class:`~paddock.errors.PinMismatch`. Without it, the system's
            trust store (or ``ca_file``) verifies the certificate and name.
        ca_file: a PEM bundle to verify with instead of the system's store
            (ignored with a fingerprint).
        timeout: seconds an ordinary call may take (each phase).
    """

    def __init__(self, url: str, token: str, fingerprint: str | None = None, ca_file: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._t = SyncTransport(url, token, fingerprint, ca_file, timeout)

    @classmethod
    def from_env(cls, *, timeout: float = DEFAULT_TIMEOUT) -> Paddock:
        """A client from ``PADDOCK_URL``, ``PADDOCK_TOKEN`` and (optional)
        ``PADDOCK_FINGERPRINT``."""
        s = config.from_env()
        return cls(s.url, s.token, s.fingerprint, timeout=timeout)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Paddock:
        """A client from the CLI's saved session (``paddock login``):
        ``$PADDOCK_CONFIG`` or ``~/.config/paddock/config.json``."""
        s = config.from_cli_config(path)
        return cls(s.url, s.token, s.fingerprint, timeout=timeout)

    def with_token(self, token: str) -> Paddock:
        """A client of the same appliance, with the same pinned certificate
        (not fetched again), acting with another token."""
        other = Paddock.__new__(Paddock)
        t = self._t
        other._t = SyncTransport(t.base_url, token, None, None, t.timeout, tls=t.tls)
        return other

    @property
    def url(self) -> str:
        return self._t.base_url

    @property
    def fingerprint(self) -> str | None:
        """The pinned fingerprint, canonical (``AA:BB:...``)."""
        return self._t.tls.fingerprint

    def close(self) -> None:
        """Closes its connections."""
        self._t.close()

    def __enter__(self) -> Paddock:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Paddock({self.url!r}, fingerprint={self.fingerprint!r})"

    # -- workspaces -------------------------------------------------------

    def health(self) -> Health:
        """The appliance's state (``GET /v1/health``; needs no scope)."""
        result: Health = self._t.call("health")
        return result

    def create_workspace(
        self,
        *,
        ttl_s: int,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mib: int | None = None,
        disk_mib: int | None = None,
        disk_mib_per_s: int | None = None,
        disk_iops: int | None = None,
        egress: Egress | Mapping[str, Sequence[str]] | None = None,
        net_mib_per_s: int | None = None,
        net_connections_per_s: int | None = None,
        signals: SignalRules | Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        secrets: Mapping[str, SecretSpec | Mapping[str, Any]] | None = None,
        timeout: float = CREATE_TIMEOUT,
    ) -> Workspace:
        """Boots a workspace and returns it once its agent is ready (``POST
        /v1/workspaces``; scope create). Use it as a context manager to
        delete it at the end of the block, even on an exception::

            with client.create_workspace(ttl_s=600) as ws:
                print(ws.run("uname -a").stdout)

        ``ttl_s`` (required, at most 7 days): it is destroyed then. The
        others default on the appliance: ``template`` ("default"), ``vcpus``
        (1), ``memory_mib`` (512), ``disk_mib`` (2048), disk rate limits
        ``disk_mib_per_s``/``disk_iops`` (100 MiB/s, 4000 per vCPU),
        ``egress`` (what it may reach: ``Egress`` or ``{"domains": [...],
        "cidrs": [...]}``; nothing by default), NIC limits ``net_mib_per_s``
        (50) and ``net_connections_per_s`` (50), ``signals`` (what it is
        watched for: ``SignalRules`` or ``{"cpu_pinned": {"threshold": 90,
        "window_s": 300, "action": "stop"}, ...}``; each left out keeps its
        default), ``env`` (secrets for its commands, never shown again),
        ``labels`` and ``secrets``: brokered secrets, names (the variables its
        commands see a placeholder in) to ``SecretSpec`` or ``{"value": ...,
        "hosts": [...], "header": "Authorization", "format": "Bearer {}"}``;
        the egress proxy puts each value into requests to its hosts (see
        :meth:`Workspace.set_secret`). ``timeout``: seconds to wait for the
        boot.
        """
        spec = _build.workspace_spec(
            ttl_s,
            template=template,
            vcpus=vcpus,
            memory_mib=memory_mib,
            disk_mib=disk_mib,
            disk_mib_per_s=disk_mib_per_s,
            disk_iops=disk_iops,
            egress=egress,
            net_mib_per_s=net_mib_per_s,
            net_connections_per_s=net_connections_per_s,
            signals=signals,
            env=env,
            labels=labels,
            secrets=secrets,
        )
        info: WorkspaceInfo = self._t.call("create_workspace", body=spec, timeout=timeout)
        return Workspace(self._t, info.id, info)

    def workspace(self, id: str) -> Workspace:
        """A handle on workspace ``id`` without asking the appliance."""
        return Workspace(self._t, _build.id_of(id))

    def get_workspace(self, id: str) -> Workspace:
        """Workspace ``id`` as it is now (``GET /v1/workspaces/{id}``; scope
        read)."""
        ws = self.workspace(id)
        ws.refresh()
        return ws

    def list_workspaces(self, labels: Mapping[str, str] | None = None) -> list[Workspace]:
        """The workspaces this token may see, those with all of ``labels``
        if given (``GET /v1/workspaces?label=K=V...``; scope read)."""
        result: WorkspaceList = self._t.call("list_workspaces", query=_build.labels_query(labels))
        return [Workspace(self._t, w.id, w) for w in result.workspaces]

    # -- links ------------------------------------------------------------

    def list_links(self) -> list[Link]:
        """Every private link (``GET /v1/links``; admin)."""
        result: LinkList = self._t.call("list_links")
        return result.links

    def create_link(self, from_: Workspace | str, to: Workspace | str, port: int, *, reason: str | None = None) -> Link:
        """Lets workspace ``from_`` open TCP connections to ``to`` on
        ``port``; ``to`` only answers (``POST /v1/links``; admin). Both must
        be running."""
        body = LinkRequest(_build.id_of(from_), _build.id_of(to), int(port), reason)
        result: Link = self._t.call("create_link", body=body)
        return result

    def delete_link(self, link: Link | str) -> None:
        """Removes a link; its connections are reset (``DELETE
        /v1/links/{link}``; admin)."""
        self._t.call("delete_link", {"link": _build.id_of(link)})

    # -- tokens -----------------------------------------------------------

    def create_token(
        self,
        name: str,
        scopes: Sequence[Scope],
        *,
        ttl_s: int | None = None,
        quotas: Quotas | Mapping[str, int | None] | None = None,
        labels: Mapping[str, str] | None = None,
        workspace_ids: Sequence[Workspace | str] | None = None,
        egress_allow: Egress | Mapping[str, Sequence[str]] | None = None,
        secret_format: SecretFormat | None = None,
        actions: ActionPolicy | Mapping[str, ActionRule] | None = None,
    ) -> NewToken:
        """Mints a token under this one, never wider (``POST /v1/tokens``).

        ``scopes`` from create, exec, files, delete, read, admin; ``ttl_s``
        (default 30 days or this token's own expiry); ``quotas``
        (``max_workspaces``, ``max_vcpus``, ``max_memory_mib``,
        ``max_disk_mib``); ``labels`` or ``workspace_ids`` narrow the
        workspaces it sees; ``egress_allow`` is what egress the workspaces it
        creates may get; ``secret_format`` ``"e2b"`` for E2B-shaped keys.
        The answer's ``secret`` is shown this once.
        """
        req = _build.token_request(
            name,
            scopes,
            ttl_s=ttl_s,
            quotas=quotas,
            labels=labels,
            workspace_ids=workspace_ids,
            egress_allow=egress_allow,
            secret_format=secret_format,
            actions=actions,
        )
        result: NewToken = self._t.call("create_token", body=req)
        return result

    def list_tokens(self) -> list[Token]:
        """Every token, without secrets (``GET /v1/tokens``; admin)."""
        result: TokenList = self._t.call("list_tokens")
        return result.tokens

    def revoke_token(self, id: Token | NewToken | str) -> str:
        """Revokes a token and everything minted from it (``DELETE
        /v1/tokens/{id}``; admin, or a token it was minted under)."""
        result: Revoked = self._t.call("revoke_token", {"id": _build.id_of(id)})
        return result.revoked

    def rotate_token(self, id: Token | NewToken | str) -> TokenRotated:
        """A new secret for a token, the old refused at once (``POST
        /v1/tokens/{id}/rotate``; admin, or a token it was minted under)."""
        result: TokenRotated = self._t.call("rotate_token", {"id": _build.id_of(id)})
        return result

    # -- the appliance ----------------------------------------------------

    def approvals(self, state: ApprovalState | None = None) -> list[Approval]:
        """Egress requests workspaces made, newest ask first, in ``state``
        if given (``GET /v1/approvals``; admin)."""
        result: ApprovalList = self._t.call("list_approvals", query=[("state", state)])
        return result.approvals

    def approval(self, id: Approval | str) -> Approval:
        """One approval: an admin's, or one this token asked for (``GET
        /v1/approvals/{id}``)."""
        ident = id if isinstance(id, str) else id.id
        result: Approval = self._t.call("get_approval", {"id": ident})
        return result

    def wait_for_approval(self, id: Approval | str, *, timeout_s: float = 3600, poll_s: float = 2) -> Approval:
        """Polls an approval until it is decided (no longer pending) and
        returns it; :class:`RequestTimeout` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            a = self.approval(id)
            if a.state != "pending":
                return a
            if time.monotonic() >= deadline:
                raise RequestTimeout(f"approval {a.id} is still pending after {timeout_s} s")
            time.sleep(poll_s)

    def decide(
        self, approval: Approval | str, approve: bool, *, ttl_s: int | None = None, reason: str | None = None
    ) -> Approval:
        """Approves a pending egress request for ``ttl_s`` seconds (its
        destination joins the workspace's allowlist until then), or denies it
        (``POST /v1/approvals/{id}``; admin)."""
        ident = approval if isinstance(approval, str) else approval.id
        result: Approval = self._t.call(
            "decide_approval", {"id": ident}, body=ApprovalDecision(approve, ttl_s, reason)
        )
        return result

    def events(self, *, event: str | None = None, workspace: Workspace | str | None = None, token: str | None = None, limit: int | None = None) -> list[Event]:
        """Audit events, oldest first, matching every filter given (``GET
        /v1/audit``; admin): ``event`` (a kind such as ``"exec_started"``),
        ``workspace``, ``token`` (a token id), the last ``limit`` of them."""
        query = [
            ("event", event),
            ("workspace", None if workspace is None else _build.id_of(workspace)),
            ("token", token),
            ("limit", limit),
        ]
        result: AuditEvents = self._t.call("audit", query=query)
        return result.events

    def rotate_tls(self) -> TlsRotated:
        """A new TLS identity for the API (``POST /v1/tls/rotate``; admin).
        This client's pin then no longer matches: make a new client with the
        answer's fingerprint."""
        result: TlsRotated = self._t.call("rotate_tls")
        return result

    def key_status(self) -> KeyStatus:
        """How the disk keys are held (``GET /v1/keys``; admin)."""
        result: KeyStatus = self._t.call("key_status")
        return result

    def recover_keys(self, recovery_secret: str) -> KeyStatus:
        """Re-seals locked disk keys to this boot state (``POST
        /v1/keys/recover``; admin)."""
        result: KeyStatus = self._t.call("recover_keys", body=RecoverKeysRequest(recovery_secret))
        return result

    def system(self) -> SystemStatus:
        """The box: version, uptime, TLS fingerprint, disk keys, data
        partition use and the newest host sample (``GET /v1/system``; admin)."""
        result: SystemStatus = self._t.call("system")
        return result

    def host_metrics(self, since: int | None = None) -> list[HostSample]:
        """The host's samples (every 5 s, the last hour kept), oldest first,
        from Unix second ``since`` on (``GET /v1/system/metrics``; admin)."""
        result: HostMetrics = self._t.call("host_metrics", query=[("since", since)])
        return result.samples

    def update_system(self, bundle_path: str | os.PathLike[str], *, at: str | int | None = None, force: bool = False) -> UpdateStatus:
        """Streams the update bundle at ``bundle_path`` to the box
        (``POST /v1/system/update``; admin): verified whole, then written to
        the slot this boot does not run. ``at``: ``"now"``, ``"next-boot"``
        (the default) or Unix seconds; ``force`` takes a bundle that is not
        newer. Follow it with :meth:`system` (``.update``)."""
        query: list[tuple[str, str | None]] = [("at", None if at is None else str(at)), ("force", "true" if force else None)]
        with open(bundle_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            headers = {"Content-Length": str(size)}
            result: UpdateStatus = self._t.call("system_update", query=query, content=read_chunks(f), headers=headers)
        return result

    def backup(self, dest: str | os.PathLike[str]) -> int:
        """Saves an encrypted backup of the box's state database and audit
        log to ``dest`` (``GET /v1/system/backup``; admin), written whole or
        not at all. This box's TPM opens it again, as does the box's
        recovery secret anywhere. The byte count."""
        resp = self._t.open("system_backup")
        try:
            return save_atomically(dest, self._t.chunks(resp))
        finally:
            resp.close()

    def restore(self, backup_path: str | os.PathLike[str], *, recovery_secret: str | None = None) -> RestoreReport:
        """Streams the backup at ``backup_path`` to the box (``POST
        /v1/system/restore``; admin), which must have no workspaces: opened
        by its TPM, or with ``recovery_secret`` (the one of the box that
        made it), verified whole, then put in place of its tokens,
        workspace records, approvals and audit history."""
        with open(backup_path, "rb") as f:
            headers = {"Content-Length": str(os.fstat(f.fileno()).st_size)}
            if recovery_secret is not None:
                headers["X-Paddock-Recovery-Secret"] = recovery_secret
            result: RestoreReport = self._t.call("system_restore", content=read_chunks(f), headers=headers)
        return result

    def prometheus_metrics(self) -> str:
        """Prometheus text for the workspaces this token sees and the host
        (``GET /metrics``; scope read)."""
        text: str = self._t.call("prometheus")
        return text


def fetch_fingerprint(url: str, timeout: float = 10.0) -> str:
    """The SHA-256 fingerprint (``AA:BB:...``) of the certificate the
    appliance at ``url`` presents, from one unauthenticated handshake that
    verifies nothing: compare it with the appliance's console before
    pinning it (as ``paddock login`` without ``--fingerprint`` does)."""
    _, host, port = parse_url(url)
    return fingerprint_of(fetch_certificate(host, port, timeout))

