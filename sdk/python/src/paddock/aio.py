"""The asyncio client: :class:`AsyncPaddock`, the same calls as
:class:`paddock.Paddock`, awaited."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

from . import _build, config
from ._http import AsyncTransport
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
from .aio_workspace import AsyncWorkspace, _file_chunks, _save
from .errors import RequestTimeout
from .review_models import Approval, ApprovalDecision, ApprovalList, ApprovalState
from .client import CREATE_TIMEOUT, DEFAULT_TIMEOUT
from .models import Egress, SecretSpec, SignalRules, WorkspaceInfo, WorkspaceList


class CreatingWorkspace(Awaitable[AsyncWorkspace]):
    """What :meth:`AsyncPaddock.create_workspace` returns: await it for the
    workspace, or ``async with`` it to have the workspace deleted at the
    end of the block."""

    def __init__(self, make: Awaitable[AsyncWorkspace]) -> None:
        self._make = make
        self._ws: AsyncWorkspace | None = None

    def __await__(self) -> Generator[Any, None, AsyncWorkspace]:
        return self._make.__await__()

    async def __aenter__(self) -> AsyncWorkspace:
        self._ws = await self._make
        return self._ws

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._ws is not None:
            await self._ws.__aexit__(et, ev, tb)


class AsyncPaddock:
    """A client of one appliance for asyncio; the arguments are those of
    :class:`paddock.Paddock`. Close it with ``await client.aclose()`` or
    ``async with``. The pinned certificate is fetched on first use (in a
    worker thread)."""

    def __init__(self, url: str, token: str, fingerprint: str | None = None, ca_file: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._t = AsyncTransport(url, token, fingerprint, ca_file, timeout)

    @classmethod
    def from_env(cls, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncPaddock:
        """A client from ``PADDOCK_URL``, ``PADDOCK_TOKEN`` and (optional)
        ``PADDOCK_FINGERPRINT``."""
        s = config.from_env()
        return cls(s.url, s.token, s.fingerprint, timeout=timeout)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncPaddock:
        """A client from the CLI's saved session (``paddock login``)."""
        s = config.from_cli_config(path)
        return cls(s.url, s.token, s.fingerprint, timeout=timeout)

    def with_token(self, token: str) -> AsyncPaddock:
        """A client of the same appliance and pinned certificate, acting
        with another token."""
        other = AsyncPaddock.__new__(AsyncPaddock)
        t = self._t
        other._t = AsyncTransport(t.base_url, token, None, None, t.timeout, tls=t.tls)
        return other

    @property
    def url(self) -> str:
        return self._t.base_url

    @property
    def fingerprint(self) -> str | None:
        return self._t.tls.fingerprint

    async def aclose(self) -> None:
        """Closes its connections."""
        await self._t.close()

    async def __aenter__(self) -> AsyncPaddock:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncPaddock({self.url!r}, fingerprint={self.fingerprint!r})"

    # -- workspaces -------------------------------------------------------

    async def health(self) -> Health:
        """The appliance's state (``GET /v1/health``)."""
        result: Health = await self._t.call("health")
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
    ) -> CreatingWorkspace:
        """Boots a workspace (``POST /v1/workspaces``); the arguments are
        those of :meth:`paddock.Paddock.create_workspace`. Either::

            async with client.create_workspace(ttl_s=600) as ws:
                ...                      # deleted at the end of the block
            ws = await client.create_workspace(ttl_s=600)
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

        async def make() -> AsyncWorkspace:
            info: WorkspaceInfo = await self._t.call("create_workspace", body=spec, timeout=timeout)
            return AsyncWorkspace(self._t, info.id, info)

        return CreatingWorkspace(make())

    def workspace(self, id: str) -> AsyncWorkspace:
        """A handle on workspace ``id`` without asking the appliance."""
        return AsyncWorkspace(self._t, _build.id_of(id))

    async def get_workspace(self, id: str) -> AsyncWorkspace:
        """Workspace ``id`` as it is now (``GET /v1/workspaces/{id}``)."""
        ws = self.workspace(id)
        await ws.refresh()
        return ws

    async def list_workspaces(self, labels: Mapping[str, str] | None = None) -> list[AsyncWorkspace]:
        """The workspaces this token may see, with all of ``labels`` if
        given (``GET /v1/workspaces``)."""
        result: WorkspaceList = await self._t.call("list_workspaces", query=_build.labels_query(labels))
        return [AsyncWorkspace(self._t, w.id, w) for w in result.workspaces]

    # -- links ------------------------------------------------------------

    async def list_links(self) -> list[Link]:
        """Every private link (``GET /v1/links``)."""
        result: LinkList = await self._t.call("list_links")
        return result.links

    async def create_link(self, from_: AsyncWorkspace | str, to: AsyncWorkspace | str, port: int, *, reason: str | None = None) -> Link:
        """Lets ``from_`` connect to ``to`` on ``port`` (``POST /v1/links``)."""
        body = LinkRequest(_build.id_of(from_), _build.id_of(to), int(port), reason)
        result: Link = await self._t.call("create_link", body=body)
        return result

    async def delete_link(self, link: Link | str) -> None:
        """Removes a link (``DELETE /v1/links/{link}``)."""
        await self._t.call("delete_link", {"link": _build.id_of(link)})

    # -- tokens -----------------------------------------------------------

    async def create_token(
        self,
        name: str,
        scopes: Sequence[Scope],
        *,
        ttl_s: int | None = None,
        quotas: Quotas | Mapping[str, int | None] | None = None,
        labels: Mapping[str, str] | None = None,
        workspace_ids: Sequence[AsyncWorkspace | str] | None = None,
        egress_allow: Egress | Mapping[str, Sequence[str]] | None = None,
        secret_format: SecretFormat | None = None,
        actions: ActionPolicy | Mapping[str, ActionRule] | None = None,
    ) -> NewToken:
        """Mints a token under this one (``POST /v1/tokens``); as
        :meth:`paddock.Paddock.create_token`."""
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
        result: NewToken = await self._t.call("create_token", body=req)
        return result

    async def list_tokens(self) -> list[Token]:
        """Every token, without secrets (``GET /v1/tokens``)."""
        result: TokenList = await self._t.call("list_tokens")
        return result.tokens

    async def revoke_token(self, id: Token | NewToken | str) -> str:
        """Revokes a token and its descendants (``DELETE /v1/tokens/{id}``)."""
        result: Revoked = await self._t.call("revoke_token", {"id": _build.id_of(id)})
        return result.revoked

    async def rotate_token(self, id: Token | NewToken | str) -> TokenRotated:
        """A new secret for a token (``POST /v1/tokens/{id}/rotate``)."""
        result: TokenRotated = await self._t.call("rotate_token", {"id": _build.id_of(id)})
        return result

    # -- the appliance ----------------------------------------------------

    async def approvals(self, state: ApprovalState | None = None) -> list[Approval]:
        """Egress requests, newest ask first (``GET /v1/approvals``)."""
        result: ApprovalList = await self._t.call("list_approvals", query=[("state", state)])
        return result.approvals

    async def approval(self, id: Approval | str) -> Approval:
        """One approval: an admin's, or one this token asked for (``GET
        /v1/approvals/{id}``)."""
        ident = id if isinstance(id, str) else id.id
        result: Approval = await self._t.call("get_approval", {"id": ident})
        return result

    async def wait_for_approval(self, id: Approval | str, *, timeout_s: float = 3600, poll_s: float = 2) -> Approval:
        """Polls an approval until it is decided (no longer pending) and
        returns it; :class:`RequestTimeout` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            a = await self.approval(id)
            if a.state != "pending":
                return a
            if time.monotonic() >= deadline:
                raise RequestTimeout(f"approval {a.id} is still pending after {timeout_s} s")
            await asyncio.sleep(poll_s)

    async def decide(
        self, approval: Approval | str, approve: bool, *, ttl_s: int | None = None, reason: str | None = None
    ) -> Approval:
        """Approves (for ``ttl_s``) or denies an egress request
        (``POST /v1/approvals/{id}``)."""
        ident = approval if isinstance(approval, str) else approval.id
        result: Approval = await self._t.call(
            "decide_approval", {"id": ident}, body=ApprovalDecision(approve, ttl_s, reason)
        )
        return result

    async def events(self, *, event: str | None = None, workspace: AsyncWorkspace | str | None = None, token: str | None = None, limit: int | None = None) -> list[Event]:
        """Audit events, oldest first (``GET /v1/audit``); filters as
        :meth:`paddock.Paddock.events`."""
        query = [
            ("event", event),
            ("workspace", None if workspace is None else _build.id_of(workspace)),
            ("token", token),
            ("limit", limit),
        ]
        result: AuditEvents = await self._t.call("audit", query=query)
        return result.events

    async def rotate_tls(self) -> TlsRotated:
        """A new TLS identity for the API (``POST /v1/tls/rotate``)."""
        result: TlsRotated = await self._t.call("rotate_tls")
        return result

    async def key_status(self) -> KeyStatus:
        """How the disk keys are held (``GET /v1/keys``)."""
        result: KeyStatus = await self._t.call("key_status")
        return result

    async def recover_keys(self, recovery_secret: str) -> KeyStatus:
        """Re-seals locked disk keys (``POST /v1/keys/recover``)."""
        result: KeyStatus = await self._t.call("recover_keys", body=RecoverKeysRequest(recovery_secret))
        return result

    async def system(self) -> SystemStatus:
        """The box: version, uptime, TLS fingerprint, disk keys, data
        partition use and the newest host sample (``GET /v1/system``; admin)."""
        result: SystemStatus = await self._t.call("system")
        return result

    async def host_metrics(self, since: int | None = None) -> list[HostSample]:
        """The host's samples (every 5 s, the last hour kept), oldest first,
        from Unix second ``since`` on (``GET /v1/system/metrics``; admin)."""
        result: HostMetrics = await self._t.call("host_metrics", query=[("since", since)])
        return result.samples

    async def update_system(self, bundle_path: str | os.PathLike[str], *, at: str | int | None = None, force: bool = False) -> UpdateStatus:
        """Streams the update bundle at ``bundle_path`` to the box
        (``POST /v1/system/update``; admin): verified whole, then written to
        the slot this boot does not run. ``at``: ``"now"``, ``"next-boot"``
        (the default) or Unix seconds; ``force`` takes a bundle that is not
        newer. Follow it with :meth:`system` (``.update``)."""
        query: list[tuple[str, str | None]] = [("at", None if at is None else str(at)), ("force", "true" if force else None)]
        headers = {"Content-Length": str(os.stat(bundle_path).st_size)}
        result: UpdateStatus = await self._t.call("system_update", query=query, content=_file_chunks(bundle_path), headers=headers)
        return result

    async def backup(self, dest: str | os.PathLike[str]) -> int:
        """Saves an encrypted backup of the box's state database and audit
        log to ``dest`` (``GET /v1/system/backup``; admin), written whole or
        not at all. The byte count."""
        resp = await self._t.open("system_backup")
        try:
            return await _save(dest, self._t.chunks(resp))
        finally:
            await resp.aclose()

    async def restore(self, backup_path: str | os.PathLike[str], *, recovery_secret: str | None = None) -> RestoreReport:
        """Streams the backup at ``backup_path`` to the box (``POST
        /v1/system/restore``; admin), which must have no workspaces: opened
        by its TPM or with ``recovery_secret``, verified whole, then put in
        place of its tokens, workspace records, approvals and audit history."""
        headers = {"Content-Length": str(os.stat(backup_path).st_size)}
        if recovery_secret is not None:
            headers["X-Paddock-Recovery-Secret"] = recovery_secret
        result: RestoreReport = await self._t.call("system_restore", content=_file_chunks(backup_path), headers=headers)
        return result

    async def prometheus_metrics(self) -> str:
        """Prometheus text (``GET /metrics``)."""
        text: str = await self._t.call("prometheus")
        return text
