"""A workspace handle for the asyncio client; the same calls as
:class:`paddock.Workspace`, awaited."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from . import _build, _stream, _wire
from .aio_process import AsyncProcess, AsyncTextSink, call_sink
from .errors import NotFound, PaddockError, ProtocolError
from .models import (
    DirListing,
    Egress,
    FileEntry,
    FileWritten,
    ForensicFileName,
    ForensicManifest,
    LimitsRequest,
    PauseRequest,
    PortPublished,
    PortRequest,
    ProcessInfo,
    ProcessList,
    PtySize,
    Quarantined,
    RunResult,
    Secret,
    SecretList,
    SecretPlace,
    SecretRemoved,
    TtlRequest,
    User,
    WorkspaceInfo,
    WorkspaceMetrics,
    WorkspaceSample,
)
from .review_models import Decision, NetworkLog, NetworkRecord, WorkspaceReport
from .workspace import manifest_check

if TYPE_CHECKING:
    from ._http import AsyncTransport

_CHUNK = 256 * 1024


async def _file_chunks(path: str | os.PathLike[str]) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


async def _save(dest: str | os.PathLike[str], chunks: AsyncIterator[bytes], check: Callable[[str], None] | None = None) -> int:
    """As :func:`paddock.workspace.save_atomically`, from an async stream."""
    dest = os.fspath(dest)
    fd, tmp = tempfile.mkstemp(prefix=".paddock-", dir=os.path.dirname(os.path.abspath(dest)))
    try:
        n, digest = 0, hashlib.sha256()
        with os.fdopen(fd, "wb") as f:
            async for chunk in chunks:
                f.write(chunk)
                digest.update(chunk)
                n += len(chunk)
        if check is not None:
            check(digest.hexdigest())
        os.replace(tmp, dest)
        return n
    except BaseException:
        os.unlink(tmp)
        raise


class AsyncWorkspace:
    """One workspace, for asyncio. Got from
    :meth:`AsyncPaddock.create_workspace` (``async with`` deletes it at the
    end of the block, even on an exception),
    :meth:`AsyncPaddock.get_workspace`, :meth:`AsyncPaddock.workspace` or
    :meth:`AsyncPaddock.list_workspaces`. Every method makes the same call
    as its :class:`paddock.Workspace` namesake."""

    def __init__(self, transport: AsyncTransport, id: str, info: WorkspaceInfo | None = None) -> None:
        self._t = transport
        self.id = id
        self.info = info

    async def __aenter__(self) -> AsyncWorkspace:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        try:
            await self.delete()
        except PaddockError as e:
            if ev is None:
                raise
            if hasattr(ev, "add_note"):
                ev.add_note(f"deleting workspace {self.id} failed too: {e}")

    def __repr__(self) -> str:
        state = self.info.state if self.info else "?"
        return f"AsyncWorkspace(id={self.id!r}, state={state!r})"

    def _p(self, **extra: str | int) -> dict[str, str | int]:
        return {"id": self.id, **extra}

    def _seen(self, info: WorkspaceInfo) -> WorkspaceInfo:
        self.info = info
        return info

    # -- its life ---------------------------------------------------------

    async def refresh(self) -> WorkspaceInfo:
        """Reads it again (``GET /v1/workspaces/{id}``)."""
        return self._seen(await self._t.call("get_workspace", self._p()))

    async def delete(self) -> None:
        """Removes it (``DELETE /v1/workspaces/{id}``); already gone is fine."""
        try:
            await self._t.call("delete_workspace", self._p())
        except NotFound:
            pass

    async def stop(self) -> WorkspaceInfo:
        """Stops its VM, keeps its disk (``POST .../stop``)."""
        return self._seen(await self._t.call("stop_workspace", self._p()))

    async def pause(self, *, ttl_s: int | None = None) -> WorkspaceInfo:
        """Pauses it (``POST .../pause``); as :meth:`paddock.Workspace.pause`."""
        return self._seen(await self._t.call("pause_workspace", self._p(), body=PauseRequest(ttl_s)))

    async def resume(self) -> WorkspaceInfo:
        """Starts it again where it was (``POST .../resume``)."""
        return self._seen(await self._t.call("resume_workspace", self._p()))

    async def set_ttl(self, ttl_s: int, *, reason: str | None = None) -> WorkspaceInfo:
        """Ends it ``ttl_s`` seconds from now (``POST .../ttl``); as
        :meth:`paddock.Workspace.set_ttl`."""
        return self._seen(await self._t.call("set_ttl", self._p(), body=TtlRequest(int(ttl_s), reason)))

    async def set_limits(self, *, disk_mib_per_s: int | None = None, disk_iops: int | None = None, net_mib_per_s: int | None = None, net_connections_per_s: int | None = None) -> WorkspaceInfo:
        """New rate limits on its disk and network (``POST .../limits``)."""
        req = LimitsRequest(disk_mib_per_s, disk_iops, net_mib_per_s, net_connections_per_s)
        return self._seen(await self._t.call("set_limits", self._p(), body=req))

    async def egress(self) -> Egress:
        """What it may reach now (from ``GET /v1/workspaces/{id}``)."""
        return (await self.refresh()).egress

    async def set_egress(self, domains: Sequence[str] = (), cidrs: Sequence[str] = ()) -> WorkspaceInfo:
        """Replaces its egress allowlist (``PUT .../egress``)."""
        body = Egress(list(domains), list(cidrs))
        return self._seen(await self._t.call("set_egress", self._p(), body=body))

    async def publish_port(self, port: int, host_port: int | None = None, *, reason: str | None = None) -> PortPublished:
        """Publishes its TCP ``port`` on the uplink (``POST .../ports``); as
        :meth:`paddock.Workspace.publish_port`."""
        result: PortPublished = await self._t.call("publish_port", self._p(), body=PortRequest(int(port), host_port, reason))
        return result

    async def unpublish_port(self, port: int) -> WorkspaceInfo:
        """Stops publishing ``port`` (``DELETE .../ports/{port}``)."""
        return self._seen(await self._t.call("unpublish_port", self._p(port=int(port))))

    async def metrics(self, since: int | None = None) -> list[WorkspaceSample]:
        """Its samples, oldest first (``GET .../metrics``)."""
        result: WorkspaceMetrics = await self._t.call("metrics", self._p(), query=[("since", since)])
        return result.samples

    async def network_log(
        self, since: int | None = None, decision: Decision | None = None, limit: int | None = None
    ) -> list[NetworkRecord]:
        """Where it connected, oldest first (``GET .../network``)."""
        result: NetworkLog = await self._t.call(
            "network_log", self._p(), query=[("since", since), ("decision", decision), ("limit", limit)]
        )
        return result.records

    async def report(self) -> WorkspaceReport:
        """Its report (``GET .../report``)."""
        result: WorkspaceReport = await self._t.call("report", self._p())
        return result

    async def secret_list(self) -> SecretList:
        """Its brokered secrets, without values, and the egress CA it trusts
        for their hosts (``GET .../secrets``; scope read)."""
        result: SecretList = await self._t.call("list_secrets", self._p())
        return result

    async def secrets(self) -> list[Secret]:
        """Its brokered secrets, without values (``GET .../secrets``; scope
        read)."""
        return (await self.secret_list()).secrets

    async def egress_ca(self) -> str:
        """The CA (PEM) it trusts for brokered hosts, for tools in it that
        keep their own trust store (``GET .../secrets``; scope read)."""
        return (await self.secret_list()).egress_ca

    async def set_secret(
        self,
        name: str,
        value: str,
        *,
        hosts: str | Sequence[str],
        header: str | None = None,
        format: str | None = None,
        replace_in: Sequence[SecretPlace] | None = None,
        allow_plain_http: bool = False,
        upstream_ca: str | None = None,
    ) -> Secret:
        """Adds or rotates a brokered secret (``PUT .../secrets/{name}``);
        see :meth:`paddock.Workspace.set_secret`."""
        spec = _build.secret_spec(value, hosts, header, format, replace_in, allow_plain_http, upstream_ca)
        result: Secret = await self._t.call("set_secret", self._p(name=name), body=spec)
        return result

    async def remove_secret(self, name: str) -> str:
        """Removes a brokered secret: its placeholder goes nowhere any more
        (``DELETE .../secrets/{name}``; scope create). The name removed."""
        result: SecretRemoved = await self._t.call("remove_secret", self._p(name=name))
        return result.removed

    async def quarantine(self) -> Quarantined:
        """Freezes it and takes a forensic snapshot (``POST .../quarantine``)."""
        result: Quarantined = await self._t.call("quarantine", self._p())
        self.info = result.workspace
        return result

    async def forensic_manifest(self) -> ForensicManifest:
        """Its forensic snapshot's manifest (``GET .../forensics/manifest``)."""
        raw: bytes = await self._t.call("forensic_file", self._p(file="manifest"))
        try:
            return _wire.from_json(ForensicManifest, json.loads(raw))
        except ValueError as e:
            raise ProtocolError(f"the forensic manifest is not JSON: {e}") from e

    async def download_forensics(self, name: ForensicFileName, dest: str | os.PathLike[str]) -> int:
        """Saves one file of its forensic snapshot, checked against the
        manifest (``GET .../forensics/{name}``)."""
        check = None if name == "manifest" else manifest_check(await self.forensic_manifest(), name)
        resp = await self._t.open("forensic_file", self._p(file=name))
        try:
            return await _save(dest, self._t.chunks(resp), check)
        finally:
            await resp.aclose()

    async def delete_forensics(self) -> None:
        """Deletes its forensic snapshot (``DELETE .../forensics``)."""
        await self._t.call("delete_forensics", self._p())

    # -- commands ---------------------------------------------------------

    async def run(
        self,
        command: _build.Command,
        *,
        stdin: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: User | None = None,
        timeout_s: int | None = None,
        on_stdout: AsyncTextSink | None = None,
        on_stderr: AsyncTextSink | None = None,
        check: bool = False,
        stream_timeout: float | None = None,
    ) -> RunResult:
        """Runs a command and waits for it (``POST .../exec``); as
        :meth:`paddock.Workspace.run`, callbacks may be coroutines."""
        req = _build.exec_request(command, stdin, env, cwd, user, timeout_s)
        wait = _build.run_stream_timeout(timeout_s, stream_timeout)
        collector = _stream.Collector(on_stdout, on_stderr)
        decoder = _stream.Decoder()
        resp = await self._t.open("exec", self._p(), body=req, stream_timeout=wait)
        try:
            async for chunk in self._t.chunks(resp):
                for ev in decoder.feed(chunk):
                    for sink, text in collector.add(ev):
                        await call_sink(sink, text)
            decoder.close()
        finally:
            await resp.aclose()
        result = collector.finish()
        return result.check() if check else result

    async def spawn(
        self,
        command: _build.Command,
        *,
        stdin: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: User | None = None,
        tag: str | None = None,
        pty: PtySize | tuple[int, int] | None = None,
        timeout_s: int | None = None,
        stream_timeout: float | None = None,
    ) -> AsyncProcess:
        """Starts a process that outlives this call (``POST .../processes``);
        as :meth:`paddock.Workspace.spawn`."""
        req = _build.process_request(command, stdin, env, cwd, user, tag, pty, timeout_s)
        resp = await self._t.open("start_process", self._p(), body=req, stream_timeout=stream_timeout)
        return await AsyncProcess(self, resp, tag)._start()

    async def attach(self, pid: int, *, stream_timeout: float | None = None) -> AsyncProcess:
        """Watches a running process from now on (``GET
        .../processes/{pid}/output``)."""
        resp = await self._t.open("watch_process", self._p(pid=int(pid)), stream_timeout=stream_timeout)
        return await AsyncProcess(self, resp)._start()

    async def processes(self) -> list[ProcessInfo]:
        """The spawned processes that still run (``GET .../processes``)."""
        result: ProcessList = await self._t.call("list_processes", self._p())
        return result.processes

    # -- files ------------------------------------------------------------

    async def write_file(self, path: str, data: bytes | str, *, mode: int | str | None = None, user: User | None = None) -> FileWritten:
        """Writes ``data`` to the file at ``path`` (``PUT .../files``)."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        query = [("path", _build.remote_path(path)), ("mode", _build.mode_of(mode)), ("user", user)]
        result: FileWritten = await self._t.call("upload_file", self._p(), query=query, content=raw)
        return result

    async def upload_file(self, local_path: str | os.PathLike[str], path: str, *, mode: int | str | None = None, user: User | None = None) -> FileWritten:
        """Streams a local file to ``path`` (``PUT .../files``)."""
        query = [("path", _build.remote_path(path)), ("mode", _build.mode_of(mode)), ("user", user)]
        headers = {"Content-Length": str(os.stat(local_path).st_size)}
        result: FileWritten = await self._t.call("upload_file", self._p(), query=query, content=_file_chunks(local_path), headers=headers)
        return result

    async def read_file(self, path: str, *, user: User | None = None) -> bytes:
        """The bytes of the file at ``path`` (``GET .../files``)."""
        resp = await self._t.open("download_file", self._p(), query=[("path", _build.remote_path(path)), ("user", user)])
        try:
            return b"".join([c async for c in self._t.chunks(resp)])
        finally:
            await resp.aclose()

    async def download_file(self, path: str, local_path: str | os.PathLike[str], *, user: User | None = None) -> int:
        """Streams the file at ``path`` to ``local_path`` (``GET .../files``);
        a cut download leaves no file."""
        resp = await self._t.open("download_file", self._p(), query=[("path", _build.remote_path(path)), ("user", user)])
        try:
            return await _save(local_path, self._t.chunks(resp))
        finally:
            await resp.aclose()

    async def list_dir(self, path: str, *, user: User | None = None) -> list[FileEntry]:
        """A directory's entries (``GET .../dir``)."""
        result: DirListing = await self._t.call("list_dir", self._p(), query=[("path", _build.remote_path(path)), ("user", user)])
        return result.entries

    async def make_dir(self, path: str, *, mode: int | str | None = None, user: User | None = None) -> str:
        """Makes a directory and its parents (``POST .../dir``)."""
        query = [("path", _build.remote_path(path)), ("mode", _build.mode_of(mode)), ("user", user)]
        created: str = (await self._t.call("make_dir", self._p(), query=query)).created
        return created

    async def remove(self, path: str, *, recursive: bool = False, user: User | None = None) -> str:
        """Removes a file or directory (``DELETE .../files``)."""
        query = [("path", _build.remote_path(path)), ("recursive", recursive or None), ("user", user)]
        deleted: str = (await self._t.call("remove_file", self._p(), query=query)).deleted
        return deleted

    async def upload_dir(self, local_dir: str | os.PathLike[str], path: str, *, user: User | None = None) -> int:
        """Copies a local tree to ``path``; the number of files."""
        files = 0
        for step in _build.upload_plan(local_dir, path):
            if step.is_dir:
                await self.make_dir(step.remote, mode=step.mode, user=user)
            else:
                await self.upload_file(step.local, step.remote, mode=step.mode, user=user)
                files += 1
        return files

    async def download_dir(self, path: str, local_dir: str | os.PathLike[str], *, user: User | None = None) -> int:
        """Copies the tree at ``path`` into ``local_dir``; the number of files."""
        root = os.fspath(local_dir)
        os.makedirs(root, exist_ok=True)
        files = 0
        for entry in await self.list_dir(path, user=user):
            remote = path.rstrip("/") + "/" + entry.name
            local = _build.local_child(root, entry.name)
            if entry.kind == "dir":
                files += await self.download_dir(remote, local, user=user)
            elif entry.kind == "file":
                await self.download_file(remote, local, user=user)
                os.chmod(local, int(entry.mode, 8) & 0o777)
                files += 1
        return files
