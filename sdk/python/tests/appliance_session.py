"""The Python SDK against a booted appliance, end to end.

    PADDOCK_URL=https://localhost:PORT PADDOCK_TOKEN=<admin token> \\
    PADDOCK_FINGERPRINT=<AA:BB:...> python appliance_session.py

Prints one line per check, ``ok <name> <detail>``, then ``all ok``; any
failure raises (non-zero exit). ``signal.alarm(900)`` bounds the whole
session and every call has a timeout. The check names, in order (stable:
the Rust test that runs this asserts on them):

    pin            the appliance presents the pinned certificate
    wrong-pin      another pin is refused with PinMismatch
    health         GET /v1/health through the pinned client
    create         a workspace made as a context manager (deleted at its end)
    list           found by its label
    uname          ``uname -sr`` says Linux 6.12
    exit-code      a non-zero exit code and its stderr
    check          run(check=True) raises CommandFailed
    stdin          stdin fed to a command
    stream         output reaches the callback while the command still runs
    env            the workspace's env and a run's own
    cwd-user       cwd and user=root
    timeout        a command's timeout_s kills it
    files-bytes    bytes written and read back
    files-path     a local file uploaded and downloaded, SHA-256 checked
    list-dir       a directory listed
    dirs           a local tree uploaded and downloaded again
    remove         a file and a tree removed (then NotFound)
    process        a background process fed input, listed, killed
    close-input    a process's stdin closed
    attach         a process watched again after detaching
    pty            a terminal, resized, with its exit code
    egress         the egress allowlist read and replaced
    ttl            the TTL moved
    limits         new network limits
    metrics        its metrics samples
    ports          a port published and unpublished
    token-scoped   a token limited to the workspace (exec, read) works there
    token-other    another token's call on it is Forbidden
    token-rotate   a rotated token's old secret is Unauthorized
    token-revoke   a revoked token is Unauthorized
    links          a private link to a second workspace made and removed
    stop           the second workspace stopped
    events         the workspace's audit events
    report         its report: commands, a file it added, its network log
    deleted        after the with block the workspace is gone (NotFound)
    async          AsyncPaddock: two workspaces created, run, deleted at once
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import tempfile
import time

import paddock
from paddock import AsyncPaddock, Paddock

CREATE_TIMEOUT = 300.0
MEMORY_MIB, DISK_MIB = 256, 512


def ok(name: str, detail: object = "") -> None:
    print(f"ok {name} {detail}".rstrip(), flush=True)


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def raises(exc: type[BaseException], fn: object, *args: object, **kw: object) -> BaseException:
    try:
        fn(*args, **kw)  # type: ignore[operator]
    except exc as e:
        return e
    raise AssertionError(f"{getattr(fn, '__name__', fn)} did not raise {exc.__name__}")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def commands(ws: paddock.Workspace) -> None:
    r = ws.run("uname -sr", timeout_s=60)
    expect(r.exit_code == 0 and r.stdout.startswith("Linux 6.12"), f"uname: {r!r} {r.stderr!r}")
    ok("uname", r.stdout.strip())

    r = ws.run("echo oops >&2; exit 3", timeout_s=60)
    expect((r.exit_code, r.stderr, r.ok) == (3, "oops\n", False), f"exit 3: {r!r} {r.stderr!r}")
    ok("exit-code", f"{r.exit_code} stderr={r.stderr.strip()}")
    e = raises(paddock.CommandFailed, ws.run, ["false"], timeout_s=60, check=True)
    ok("check", type(e).__name__)

    r = ws.run(["cat"], stdin=b"piped through\n", timeout_s=60)
    expect(r.stdout == "piped through\n", f"stdin: {r.stdout!r}")
    ok("stdin", r.stdout.strip())

    arrivals: list[tuple[float, str]] = []
    t0 = time.monotonic()
    r = ws.run("echo a; sleep 2; echo b", timeout_s=60, on_stdout=lambda t: arrivals.append((time.monotonic() - t0, t)))
    end = time.monotonic() - t0
    text = "".join(t for _, t in arrivals)
    expect(text == "a\nb\n" == r.stdout, f"stream: {arrivals} {r!r}")
    first_a = next(at for at, t in arrivals if "a" in t)
    expect(first_a < end - 1.5, f"stream: a came at {first_a:.2f} s of {end:.2f} s: not while it ran")
    ok("stream", f"a at {first_a:.2f}s, end at {end:.2f}s, {len(arrivals)} chunks")

    r = ws.run('echo "$GREETING $MINE"', env={"MINE": "mine"}, timeout_s=60)
    expect(r.stdout == "hello mine\n", f"env: {r.stdout!r}")
    expect(ws.refresh().env_keys == ["GREETING"], f"env keys: {ws.info}")
    ok("env", r.stdout.strip())

    r = ws.run("pwd; id -un", cwd="/tmp", user="root", timeout_s=60)
    expect(r.stdout == "/tmp\nroot\n", f"cwd/user: {r.stdout!r}")
    ok("cwd-user", r.stdout.replace("\n", " ").strip())

    r = ws.run(["sleep", "60"], timeout_s=2)
    expect(r.timed_out and r.exit_code is None, f"timeout: {r!r}")
    ok("timeout", f"timed_out signal={r.signal} after {r.duration_ms} ms")


def files(ws: paddock.Workspace, tmp: str) -> None:
    ws.make_dir("/tmp/sdk/sub")
    data = bytes(range(256)) * 4
    w = ws.write_file("/tmp/sdk/hello.bin", data, mode=0o640)
    expect((w.bytes, w.mode) == (1024, "640"), f"write: {w}")
    expect(ws.read_file("/tmp/sdk/hello.bin") == data, "read back differs")
    ok("files-bytes", f"{w.bytes} mode={w.mode}")

    src, back = os.path.join(tmp, "big.bin"), os.path.join(tmp, "big.back")
    with open(src, "wb") as f:
        f.write(os.urandom(3 << 20))
    up = ws.upload_file(src, "/tmp/sdk/big.bin")
    n = ws.download_file("/tmp/sdk/big.bin", back)
    digest = sha256_file(src)
    guest = ws.run(["sha256sum", "/tmp/sdk/big.bin"], timeout_s=60).stdout.split()[0]
    expect(up.bytes == n == 3 << 20 and sha256_file(back) == digest == guest, "path round trip differs")
    ok("files-path", f"{n} sha256={digest[:16]}")

    entries = {e.name: e for e in ws.list_dir("/tmp/sdk")}
    expect(set(entries) == {"hello.bin", "big.bin", "sub"}, f"list: {sorted(entries)}")
    hello = entries["hello.bin"]
    expect((hello.kind, hello.size, hello.mode, entries["sub"].kind) == ("file", 1024, "640", "dir"), f"list: {hello}")
    ok("list-dir", " ".join(sorted(entries)))

    tree, again = os.path.join(tmp, "tree"), os.path.join(tmp, "again")
    os.makedirs(os.path.join(tree, "nested", "deeper"))
    layout = {"a.txt": b"a\n", "nested/b.txt": b"b\n", "nested/deeper/c.bin": os.urandom(70_000)}
    for rel, content in layout.items():
        with open(os.path.join(tree, rel), "wb") as f:
            f.write(content)
    sent = ws.upload_dir(tree, "/tmp/sdk/tree")
    listed = ws.run("cd /tmp/sdk/tree && find . -type f | sort", timeout_s=60).stdout.split()
    got = ws.download_dir("/tmp/sdk/tree", again)
    for rel, content in layout.items():
        with open(os.path.join(again, rel), "rb") as f:
            expect(f.read() == content, f"dirs: {rel} differs")
    expect(sent == got == 3 and listed == ["./a.txt", "./nested/b.txt", "./nested/deeper/c.bin"], f"dirs: {listed}")
    ok("dirs", f"{got} files")

    ws.remove("/tmp/sdk/hello.bin")
    raises(paddock.NotFound, ws.read_file, "/tmp/sdk/hello.bin")
    ws.remove("/tmp/sdk", recursive=True)
    e = raises(paddock.NotFound, ws.list_dir, "/tmp/sdk")
    ok("remove", type(e).__name__)


def processes(ws: paddock.Workspace, uniq: str) -> None:
    tag = f"sdk-bg-{uniq}"
    p = ws.spawn(["sh", "-c", "read line; echo got:$line; sleep 600"], stdin=True, tag=tag, timeout_s=300, stream_timeout=120)
    listed = [x for x in ws.processes() if x.pid == p.pid]
    expect(len(listed) == 1 and listed[0].tag == tag, f"processes: {ws.processes()}")
    p.send_input("hello\n")
    seen = ""
    for out in p.output():
        seen += out.text
        if "got:hello" in seen:
            break
    p.kill()
    r = p.wait()
    expect("got:hello" in seen and r.signal == 9 and r.exit_code is None, f"process: {seen!r} {r!r}")
    ok("process", f"pid={p.pid} {seen.strip()} signal={r.signal}")

    c = ws.spawn(["cat"], stdin=True, timeout_s=120, stream_timeout=120)
    c.send_input(b"x\n")
    c.close_input()
    r = c.wait()
    expect((r.exit_code, r.stdout) == (0, "x\n"), f"close-input: {r!r}")
    ok("close-input", f"exit={r.exit_code} {r.stdout.strip()}")

    late = ws.spawn(["sh", "-c", "sleep 8; echo late"], timeout_s=120, stream_timeout=120)
    late.detach()
    again = ws.attach(late.pid, stream_timeout=120)
    r = again.wait()
    expect((again.pid, r.exit_code, r.stdout) == (late.pid, 0, "late\n"), f"attach: {r!r}")
    ok("attach", r.stdout.strip())

    t = ws.spawn(["/bin/sh"], pty=(80, 24), timeout_s=120, stream_timeout=120)
    t.send_input("stty size\n")
    screen = ""
    for out in t.output():
        screen += out.text
        if "24 80" in screen:
            break
    t.resize(100, 30)
    t.send_input("stty size; exit 7\n")
    r = t.wait()
    expect("24 80" in screen and "30 100" in r.stdout and r.exit_code == 7, f"pty: {r.stdout!r} {r!r}")
    ok("pty", f"80x24 -> 100x30 exit={r.exit_code}")


def host_controls(ws: paddock.Workspace) -> None:
    expect(ws.egress() == paddock.Egress([], []), f"egress at first: {ws.info}")
    info = ws.set_egress(domains=["example.com"], cidrs=["198.51.100.0/24:443"])
    expect(info.egress.domains == ["example.com"] and ws.egress().cidrs == ["198.51.100.0/24:443"], f"egress: {info.egress}")
    expect(ws.set_egress().egress == paddock.Egress([], []), "egress not cleared")
    ok("egress", "example.com 198.51.100.0/24:443, then none")

    before = ws.refresh().expires_at
    after = ws.set_ttl(1800).expires_at
    expect(after > before, f"ttl: {before} -> {after}")
    ok("ttl", f"+{after - before}s")

    info = ws.set_limits(net_mib_per_s=20, net_connections_per_s=30)
    expect((info.limits.net_bytes_per_s, info.limits.net_connections_per_s) == (20 << 20, 30), f"limits: {info.limits}")
    ok("limits", f"net {info.limits.net_bytes_per_s} B/s, {info.limits.net_connections_per_s} conn/s")

    samples = ws.metrics()
    expect(all(s.memory_limit_bytes > 0 for s in samples), f"metrics: {samples}")
    ok("metrics", f"{len(samples)} samples")

    pub = ws.publish_port(8080)
    expect(pub.port == 8080 and 20000 <= pub.host_port <= 29999, f"ports: {pub}")
    expect([(x.port, x.host_port) for x in ws.refresh().published] == [(8080, pub.host_port)], f"published: {ws.info}")
    expect(ws.unpublish_port(8080).published == [], "still published")
    ok("ports", f"8080->{pub.host_port}")


def tokens(client: Paddock, ws: paddock.Workspace, uniq: str) -> None:
    t1 = client.create_token(f"sdk-ws-{uniq}", ["exec", "read"], workspace_ids=[ws], ttl_s=900)
    c1 = client.with_token(t1.secret)
    mine = c1.workspace(ws.id)
    r = mine.run("echo scoped", timeout_s=60)
    expect(r.stdout == "scoped\n", f"scoped: {r!r}")
    e = raises(paddock.Forbidden, mine.read_file, "/etc/hostname")
    ok("token-scoped", f"exec={r.stdout.strip()} files={type(e).__name__}")

    t2 = client.create_token(f"sdk-other-{uniq}", ["exec", "read", "files"], ttl_s=900)
    c2 = client.with_token(t2.secret)
    e = raises(paddock.Forbidden, c2.workspace(ws.id).run, ["true"], timeout_s=60)
    expect(ws.id not in [w.id for w in c2.list_workspaces()], "the other token lists it")
    ok("token-other", type(e).__name__)

    rotated = client.rotate_token(t2)
    e = raises(paddock.Unauthorized, c2.list_workspaces)
    c2.close()
    c2 = client.with_token(rotated.secret)
    c2.list_workspaces()
    ok("token-rotate", f"old={type(e).__name__} new=ok")

    client.revoke_token(t1)
    client.revoke_token(t2)
    e = raises(paddock.Unauthorized, mine.run, ["true"], timeout_s=60)
    revoked = {t.id: t.revoked for t in client.list_tokens()}
    expect(revoked.get(t1.id) is True and revoked.get(t2.id) is True, f"tokens: {revoked}")
    ok("token-revoke", type(e).__name__)
    c1.close()
    c2.close()


def links(client: Paddock, ws: paddock.Workspace, uniq: str) -> None:
    with client.create_workspace(ttl_s=600, labels={"run": uniq, "via": "python-sdk"}, timeout=CREATE_TIMEOUT, memory_mib=MEMORY_MIB, disk_mib=DISK_MIB) as peer:
        link = client.create_link(ws, peer, 8080)
        expect((link.from_, link.to, link.port) == (ws.id, peer.id, 8080), f"link: {link}")
        expect(link.to_address == peer.info.address, f"link address: {link} {peer.info}")  # type: ignore[union-attr]
        expect(link.id in [x.id for x in client.list_links()], "link not listed")
        client.delete_link(link)
        expect(link.id not in [x.id for x in client.list_links()], "link still listed")
        ok("links", f"{link.id} {ws.id}->{peer.id}:8080")
        info = peer.stop()
        expect(info.state == "stopped", f"stop: {info.state}")
        ok("stop", info.state)


def events(client: Paddock, ws: paddock.Workspace) -> None:
    evs = client.events(workspace=ws.id, limit=10000)
    kinds = {e.event for e in evs}
    want = {"workspace_created", "exec_started", "exec_ended", "file_written", "file_read", "file_changed",
            "process_input", "process_signalled", "process_attached", "workspace_egress_changed"}
    expect(want <= kinds and all(e.workspace == ws.id for e in evs), f"events: missing {want - kinds}")
    started = client.events(workspace=ws.id, event="exec_started", limit=10000)
    expect(bool(started) and all(e.event == "exec_started" and e.get("argv0") for e in started), "exec_started filter")
    ok("events", f"{len(evs)} events, {len(kinds)} kinds, {len(started)} exec_started")


def report(ws: paddock.Workspace) -> None:
    ws.write_file("/var/tmp/sdk-report.txt", b"for the report\n")
    r = ws.report()
    added = [c for c in r.files.changes if c.path == "/var/tmp/sdk-report.txt"]
    expect(r.files.unavailable is None and len(added) == 1 and added[0].change == "added", f"report files: {r.files}")
    expect(r.commands_started > 0 and any(c.exit_code == 0 for c in r.commands), f"report commands: {r.commands[:3]}")
    log = ws.network_log(decision="denied")
    expect(all(x.decision == "denied" for x in log), "network_log filter")
    ok("report", f"{len(r.commands)} commands, {len(r.files.changes)} changes, {len(log)} denied records")


async def both_async(url: str, token: str, fingerprint: str, uniq: str) -> None:
    async with AsyncPaddock(url, token, fingerprint, timeout=60) as client:

        async def one(i: int) -> tuple[str, str, float, float]:
            t0 = time.monotonic()
            labels = {"run": uniq, "via": "python-sdk-async"}
            async with client.create_workspace(ttl_s=600, labels=labels, timeout=CREATE_TIMEOUT, memory_mib=MEMORY_MIB, disk_mib=DISK_MIB) as ws:
                chunks: list[str] = []

                async def sink(text: str) -> None:
                    chunks.append(text)

                r = await ws.run(["sh", "-c", f"uname -sr; echo async-{i}"], timeout_s=60, on_stdout=sink)
                expect(r.exit_code == 0 and r.stdout.startswith("Linux 6.12") and f"async-{i}" in "".join(chunks), f"async {i}: {r!r}")
                wid = ws.id
            return wid, r.stdout.split("\n")[0], t0, time.monotonic()

        results = await asyncio.gather(one(1), one(2))
        (a, ua, s1, e1), (b, _, s2, e2) = results
        expect(a != b and s2 < e1 and s1 < e2, f"async: {results}")
        for wid in (a, b):
            try:
                await client.get_workspace(wid)
                raise AssertionError(f"async: {wid} still there")
            except paddock.NotFound:
                pass
    ok("async", f"2 workspaces {a} {b} ({ua}), {max(e1, e2) - min(s1, s2):.1f}s together")


def main() -> None:
    signal.alarm(900)
    url, token = os.environ["PADDOCK_URL"], os.environ["PADDOCK_TOKEN"]
    fingerprint = paddock.normalize_fingerprint(os.environ["PADDOCK_FINGERPRINT"])
    uniq = f"{os.getpid()}-{int(time.time())}"

    seen = paddock.fetch_fingerprint(url, timeout=30)
    expect(seen == fingerprint, f"the appliance presents {seen}, not {fingerprint}")
    ok("pin", fingerprint)
    last = fingerprint[-1]
    wrong = fingerprint[:-1] + ("0" if last != "0" else "1")
    with Paddock(url, token, wrong, timeout=30) as bad:
        e = raises(paddock.PinMismatch, bad.list_workspaces)
    ok("wrong-pin", type(e).__name__)

    with Paddock(url, token, fingerprint.replace(":", "").lower(), timeout=60) as client, tempfile.TemporaryDirectory() as tmp:
        h = client.health()
        expect(h.status == "ok", f"health: {h}")
        ok("health", f"{h.status} {h.version}")

        labels = {"run": uniq, "via": "python-sdk"}
        with client.create_workspace(ttl_s=900, labels=labels, env={"GREETING": "hello"}, timeout=CREATE_TIMEOUT, memory_mib=MEMORY_MIB, disk_mib=DISK_MIB) as ws:
            expect(ws.info is not None and ws.info.state == "running", f"create: {ws.info}")
            ok("create", f"{ws.id} {ws.info.state}")  # type: ignore[union-attr]
            found = [w.id for w in client.list_workspaces(labels=labels)]
            expect(found == [ws.id], f"list: {found}")
            ok("list", f"{len(found)} with run={uniq}")
            commands(ws)
            files(ws, tmp)
            processes(ws, uniq)
            host_controls(ws)
            tokens(client, ws, uniq)
            links(client, ws, uniq)
            events(client, ws)
            report(ws)
            ws_id = ws.id
        e = raises(paddock.NotFound, client.get_workspace, ws_id)
        ok("deleted", type(e).__name__)

        asyncio.run(both_async(url, token, fingerprint, uniq))
        left = client.list_workspaces(labels={"run": uniq})
        expect(left == [], f"left behind: {left}")
    print("all ok", flush=True)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        import traceback

        traceback.print_exc()
        print("FAILED", flush=True)
        sys.exit(1)
