"""A workspace handle for the blocking client: its life, its commands, its
processes, its files and what the host lets it do."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from . import _build, _stream, _wire
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
from .process import Process
from .review_models import Decision, NetworkLog, NetworkRecord, WorkspaceReport

if TYPE_CHECKING:
    from ._http import SyncTransport

_CHUNK = 256 * 1024


def read_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def save_atomically(dest: str | os.PathLike[str], chunks: Iterable[bytes], check: Callable[[str], None] | None = None) -> int:
    """Writes ``chunks`` to a temporary file beside ``dest`` and renames it
    to ``dest`` once they all arrived (and ``check(sha256)`` passed): a
    download cut short leaves no file behind. The byte count."""
    dest = os.fspath(dest)
    fd, tmp = tempfile.mkstemp(prefix=".paddock-", dir=os.path.dirname(os.path.abspath(dest)))
    try:
        n, digest = 0, hashlib.sha256()
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
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


def manifest_check(manifest: ForensicManifest, name: str) -> Callable[[str], None]:
    """A check that a downloaded forensic file has the manifest's SHA-256."""
    want = manifest.files.get(name)

    def check(got: str) -> None:
        if want is None or want.sha256 != got:
            raise ProtocolError(f"forensics {name}: SHA-256 {got}, but the manifest says {want.sha256 if want else 'nothing'}")

    return check


class Workspace:
    """One workspace. Got from :meth:`Paddock.create_workspace` (then a
    context manager that deletes it on exit, even on an exception),
    :meth:`Paddock.get_workspace`, :meth:`Paddock.workspace` or
    :meth:`Paddock.list_workspaces`.

    ``info`` is the workspace as last seen (``None`` for a bare handle);
    :meth:`refresh` reads it again.
    """

    def __init__(self, transport: SyncTransport, id: str, info: WorkspaceInfo | None = None) -> None:
        self._t = transport
        self.id = id
        self.info = info

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.delete()
        except PaddockError as e:
            if ev is None:
                raise
            if hasattr(ev, "add_note"):
                ev.add_note(f"deleting workspace {self.id} failed too: {e}")

    def __repr__(self) -> str:
        state = self.info.state if self.info else "?"
        return f"Workspace(id={self.id!r}, state={state!r})"

    def _p(self, **extra: str | int) -> dict[str, str | int]:
        return {"id": self.id, **extra}

    def _seen(self, info: WorkspaceInfo) -> WorkspaceInfo:
        self.info = info
        return info

    # -- its life ---------------------------------------------------------

    def refresh(self) -> WorkspaceInfo:
        """Reads it again (``GET /v1/workspaces/{id}``; scope read)."""
        return self._seen(self._t.call("get_workspace", self._p()))

    def delete(self) -> None:
        """Stops its VM and removes its disk and record (``DELETE
        /v1/workspaces/{id}``; scope delete). Already gone is fine."""
        try:
            self._t.call("delete_workspace", self._p())
        except NotFound:
            pass

    def stop(self) -> WorkspaceInfo:
        """Stops its VM and keeps its disk (``POST .../stop``; scope delete)."""
        return self._seen(self._t.call("stop_workspace", self._p()))

    def pause(self, *, ttl_s: int | None = None) -> WorkspaceInfo:
        """Pauses it (``POST .../pause``; scope delete): its memory and
        processes kept on the box, encrypted under its key, its TTL
        standing still; deleted ``ttl_s`` seconds later (default a day)
        unless resumed (:meth:`resume`)."""
        return self._seen(self._t.call("pause_workspace", self._p(), body=PauseRequest(ttl_s)))

    def resume(self) -> WorkspaceInfo:
        """Starts it again where it was paused (``POST .../resume``; scope
        create), also after the box restarted."""
        return self._seen(self._t.call("resume_workspace", self._p()))

    def set_ttl(self, ttl_s: int, *, reason: str | None = None) -> WorkspaceInfo:
        """Ends it ``ttl_s`` seconds from now, sooner or later than before
        (``POST .../ttl``; scope create, 1 s to 7 days). Past the token's
        ``max_ttl_s`` its policy decides: refused (:class:`Forbidden`), or
        asked for (:class:`ApprovalPending`, ``reason`` is for the
        approver)."""
        return self._seen(self._t.call("set_ttl", self._p(), body=TtlRequest(int(ttl_s), reason)))

    def set_limits(self, *, disk_mib_per_s: int | None = None, disk_iops: int | None = None, net_mib_per_s: int | None = None, net_connections_per_s: int | None = None) -> WorkspaceInfo:
        """New rate limits on its disk and network, any of them (``POST
        .../limits``; admin)."""
        req = LimitsRequest(disk_mib_per_s, disk_iops, net_mib_per_s, net_connections_per_s)
        return self._seen(self._t.call("set_limits", self._p(), body=req))

    def egress(self) -> Egress:
        """What it may reach now (read from ``GET /v1/workspaces/{id}``)."""
        return self.refresh().egress

    def set_egress(self, domains: Sequence[str] = (), cidrs: Sequence[str] = ()) -> WorkspaceInfo:
        """Replaces its egress allowlist, in force when this returns (``PUT
        .../egress``; admin). Nothing given: it reaches nothing."""
        body = Egress(list(domains), list(cidrs))
        return self._seen(self._t.call("set_egress", self._p(), body=body))

    def publish_port(self, port: int, host_port: int | None = None, *, reason: str | None = None) -> PortPublished:
        """Makes its TCP ``port`` reachable from the appliance's uplink at
        ``host_port`` (20000-29999; the first free one if ``None``) (``POST
        .../ports``; admin, or a token whose policy allows it; one whose
        policy says ask gets :class:`ApprovalPending`)."""
        result: PortPublished = self._t.call("publish_port", self._p(), body=PortRequest(int(port), host_port, reason))
        return result

    def unpublish_port(self, port: int) -> WorkspaceInfo:
        """Stops publishing ``port`` (``DELETE .../ports/{port}``; admin)."""
        return self._seen(self._t.call("unpublish_port", self._p(port=int(port))))

    def metrics(self, since: int | None = None) -> list[WorkspaceSample]:
        """Its samples (every 5 s while it runs, the last hour), oldest first,
        from Unix second ``since`` on (``GET .../metrics``; scope read)."""
        result: WorkspaceMetrics = self._t.call("metrics", self._p(), query=[("since", since)])
        return result.samples

    def network_log(
        self, since: int | None = None, decision: Decision | None = None, limit: int | None = None
    ) -> list[NetworkRecord]:
        """Where it connected: its lookups and proxied connections, counted
        per minute, oldest first; records ending at or after ``since``, of one
        ``decision`` if given, the newest ``limit`` (``GET .../network``;
        scope read)."""
        result: NetworkLog = self._t.call(
            "network_log", self._p(), query=[("since", since), ("decision", decision), ("limit", limit)]
        )
        return result.records

    def report(self) -> WorkspaceReport:
        """What to review before trusting what came out of it: its commands
        and how they ended, signals, network summary and (while it runs, with
        the exec scope) what it changed against its template
        (``GET .../report``; scope read)."""
        result: WorkspaceReport = self._t.call("report", self._p())
        return result

    def secret_list(self) -> SecretList:
        """Its brokered secrets, without values, and the egress CA it trusts
        for their hosts (``GET .../secrets``; scope read)."""
        result: SecretList = self._t.call("list_secrets", self._p())
        return result

    def secrets(self) -> list[Secret]:
        """Its brokered secrets, without values (``GET .../secrets``; scope
        read)."""
        return self.secret_list().secrets

    def egress_ca(self) -> str:
        """The CA (PEM) it trusts for brokered hosts, for tools in it that
        keep their own trust store (``GET .../secrets``; scope read)."""
        return self.secret_list().egress_ca

    def set_secret(
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
        """Adds a brokered secret, or rotates one (its placeholder stays),
        in force for its next connection (``PUT .../secrets/{name}``; scope
        create). Its commands see a placeholder in the variable ``name``
        (those started after a new secret was added); the egress proxy puts
        ``value`` into requests to ``hosts`` (each on its egress allowlist):
        as ``header``, to ``format`` with ``{}`` for the value (``"Bearer
        {}"``), and wherever ``replace_in`` (``"headers"`` by default,
        ``"query"``, ``"body"``) holds the placeholder. Over TLS only unless
        ``allow_plain_http``; ``upstream_ca`` (PEM) replaces the public
        roots for those hosts. The value is never shown again."""
        spec = _build.secret_spec(value, hosts, header, format, replace_in, allow_plain_http, upstream_ca)
        result: Secret = self._t.call("set_secret", self._p(name=name), body=spec)
        return result

    def remove_secret(self, name: str) -> str:
        """Removes a brokered secret: its placeholder goes nowhere any more
        (``DELETE .../secrets/{name}``; scope create). The name removed."""
        result: SecretRemoved = self._t.call("remove_secret", self._p(name=name))
        return result.removed

    def quarantine(self) -> Quarantined:
        """Freezes it below the guest, revokes the tokens scoped to it and
        takes a forensic snapshot (``POST .../quarantine``; admin)."""
        result: Quarantined = self._t.call("quarantine", self._p())
        self.info = result.workspace
        return result

    def forensic_manifest(self) -> ForensicManifest:
        """Its forensic snapshot's manifest (``GET .../forensics/manifest``;
        admin)."""
        raw: bytes = self._t.call("forensic_file", self._p(file="manifest"))
        try:
            return _wire.from_json(ForensicManifest, json.loads(raw))
        except ValueError as e:
            raise ProtocolError(f"the forensic manifest is not JSON: {e}") from e

    def download_forensics(self, name: ForensicFileName, dest: str | os.PathLike[str]) -> int:
        """Saves one file of its forensic snapshot to ``dest`` (``GET
        .../forensics/{name}``; admin); memory, disk and audit are checked
        against the manifest's SHA-256 first. The byte count."""
        check = None if name == "manifest" else manifest_check(self.forensic_manifest(), name)
        resp = self._t.open("forensic_file", self._p(file=name))
        try:
            return save_atomically(dest, self._t.chunks(resp), check)
        finally:
            resp.close()

    def delete_forensics(self) -> None:
        """Deletes its forensic snapshot (``DELETE .../forensics``; admin)."""
        self._t.call("delete_forensics", self._p())

    # -- commands ---------------------------------------------------------

    def run(
        self,
        command: _build.Command,
        *,
        stdin: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: User | None = None,
        timeout_s: int | None = None,
        on_stdout: _stream.TextSink | None = None,
        on_stderr: _stream.TextSink | None = None,
        check: bool = False,
        stream_timeout: float | None = None,
    ) -> RunResult:
        """Runs a command and waits for it (``POST .../exec``; scope exec).

        ``command`` is an argv list, or a string for ``/bin/sh -c``. ``stdin``
        (at most 1 MiB) is its whole standard input; ``env`` adds to the
        workspace's; ``user`` is ``"agent"`` (the default) or ``"root"``;
        after ``timeout_s`` the appliance kills it (the result then says
        ``timed_out``). ``on_stdout``/``on_stderr`` get its output as text as
        it is produced (keep them quick: a client that stops reading for 15 s
        ends the command). ``check=True`` raises
        :class:`~paddock.errors.CommandFailed` unless it exits with 0.
        ``stream_timeout``: the longest silence to wait through (default:
        ``timeout_s`` + 60 s, or no limit without ``timeout_s``).
        """
        req = _build.exec_request(command, stdin, env, cwd, user, timeout_s)
        wait = _build.run_stream_timeout(timeout_s, stream_timeout)
        collector = _stream.Collector(on_stdout, on_stderr)
        decoder = _stream.Decoder()
        resp = self._t.open("exec", self._p(), body=req, stream_timeout=wait)
        try:
            for chunk in self._t.chunks(resp):
                for ev in decoder.feed(chunk):
                    for sink, text in collector.add(ev):
                        sink(text)
            decoder.close()
        finally:
            resp.close()
        result = collector.finish()
        return result.check() if check else result

    def spawn(
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
    ) -> Process:
        """Starts a process that outlives this call (``POST .../processes``;
        scope exec) and returns it once it runs, with its output stream open.

        ``stdin=True`` keeps its stdin open for :meth:`Process.send_input`;
        ``pty=(cols, rows)`` runs it on a terminal (its output is then all
        stdout); ``tag`` names it (unique among running ones); after
        ``timeout_s`` it is killed, whoever watches. ``stream_timeout``: the
        longest silence the handle waits through (default: no limit).
        """
        req = _build.process_request(command, stdin, env, cwd, user, tag, pty, timeout_s)
        resp = self._t.open("start_process", self._p(), body=req, stream_timeout=stream_timeout)
        return Process(self, resp, tag)

    def attach(self, pid: int, *, stream_timeout: float | None = None) -> Process:
        """Watches a running process's output from now on (``GET
        .../processes/{pid}/output``; scope exec). To come back to a
        terminal, resize it again so full-screen programs redraw."""
        resp = self._t.open("watch_process", self._p(pid=int(pid)), stream_timeout=stream_timeout)
        return Process(self, resp)

    def processes(self) -> list[ProcessInfo]:
        """The processes started with :meth:`spawn` that still run (``GET
        .../processes``; scope exec)."""
        result: ProcessList = self._t.call("list_processes", self._p())
        return result.processes

    # -- files ------------------------------------------------------------

    def write_file(self, path: str, data: bytes | str, *, mode: int | str | None = None, user: User | None = None) -> FileWritten:
        """Writes ``data`` (text as UTF-8) to the file at absolute ``path``
        (``PUT .../files``; scope files, at most 256 MiB). ``mode``: octal
        bits (``0o644``, the default); ``user``: whose permissions the guest
        checks (``"root"`` needs the exec scope too)."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        query = [("path", _build.remote_path(path)), ("mode", _build.mode_of(mode)), ("user", user)]
        result: FileWritten = self._t.call("upload_file", self._p(), query=query, content=raw)
        return result

    def upload_file(self, local_path: str | os.PathLike[str], path: str, *, mode: int | str | None = None, user: User | None = None) -> FileWritten:
        """Streams the local file ``local_path`` to ``path`` in the workspace
        (``PUT .../files``), with a Content-Length, never held whole."""
        query = [("path", _build.remote_path(path)), ("mode", _build.mode_of(mode)), ("user", user)]
        with open(local_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            headers = {"Content-Length": str(size)}
            result: FileWritten = self._t.call("upload_file", self._p(), query=query, content=read_chunks(f), headers=headers)
        return result

    def read_file(self, path: str, *, user: User | None = None) -> bytes:
        """The bytes of the file at ``path`` (``GET .../files``; scope files)."""
        resp = self._t.open("download_file", self._p(), query=[("path", _build.remote_path(path)), ("user", user)])
        try:
            return b"".join(self._t.chunks(resp))
        finally:
            resp.close()

    def download_file(self, path: str, local_path: str | os.PathLike[str], *, user: User | None = None) -> int:
        """Streams the file at ``path`` to ``local_path`` (``GET
        .../files``), created private (mode 0600); a download cut short
        leaves no file. The byte count."""
        resp = self._t.open("download_file", self._p(), query=[("path", _build.remote_path(path)), ("user", user)])
        try:
            return save_atomically(local_path, self._t.chunks(resp))
        finally:
            resp.close()

    def list_dir(self, path: str, *, user: User | None = None) -> list[FileEntry]:
        """A directory's entries by name, at most 5000 (``GET .../dir``;
        scope files)."""
        result: DirListing = self._t.call("list_dir", self._p(), query=[("path", _build.remote_path(path)), ("user", user)])
        return result.entries

    def make_dir(self, path: str, *, mode: int | str | None = None, user: User | None = None) -> str:
        """Makes a directory and its parents (``POST .../dir``; scope files);
        there already is fine. ``mode`` defaults to 0o755."""
        query = [("path", _build.remote_path(path)), ("mode", _build.mode_of(mode)), ("user", user)]
        created: str = self._t.call("make_dir", self._p(), query=query).created
        return created

    def remove(self, path: str, *, recursive: bool = False, user: User | None = None) -> str:
        """Removes a file or an empty directory, or with ``recursive=True``
        a whole tree (``DELETE .../files``; scope files)."""
        query = [("path", _build.remote_path(path)), ("recursive", recursive or None), ("user", user)]
        deleted: str = self._t.call("remove_file", self._p(), query=query).deleted
        return deleted

    def upload_dir(self, local_dir: str | os.PathLike[str], path: str, *, user: User | None = None) -> int:
        """Copies the local tree ``local_dir`` to ``path`` (directories made,
        regular files uploaded with their permission bits; symbolic links
        skipped). The number of files."""
        files = 0
        for step in _build.upload_plan(local_dir, path):
            if step.is_dir:
                self.make_dir(step.remote, mode=step.mode, user=user)
            else:
                self.upload_file(step.local, step.remote, mode=step.mode, user=user)
                files += 1
        return files

    def download_dir(self, path: str, local_dir: str | os.PathLike[str], *, user: User | None = None) -> int:
        """Copies the tree at ``path`` into the local directory ``local_dir``
        (made if missing): directories and regular files; symbolic links
        and others skipped. The number of files."""
        root = os.fspath(local_dir)
        os.makedirs(root, exist_ok=True)
        files = 0
        for entry in self.list_dir(path, user=user):
            remote = path.rstrip("/") + "/" + entry.name
            local = _build.local_child(root, entry.name)
            if entry.kind == "dir":
                files += self.download_dir(remote, local, user=user)
            elif entry.kind == "file":
                self.download_file(remote, local, user=user)
                os.chmod(local, int(entry.mode, 8) & 0o777)
                files += 1
        return files

