"""Offline tests of the SDK: pinning against a loopback HTTPS server with
throwaway certificates (what the server did and did not receive), the
mapping of error answers, the exec/process stream framing, and the calls'
requests and answers. No network beyond 127.0.0.1.

    python -m unittest discover -s sdk/python/tests -p 'test_*.py'
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))

import paddock
from paddock import _stream, _wire
from paddock.errors import api_error
from _tlsserver import Cert, Reply, Stream, TLSServer, make_cert

TOKEN = "pdk_" + "ab" * 32

LIMITS = {"cpu_max_us_per_100ms": 100000, "memory_max_bytes": 1, "pids_max": 17, "io_max_bytes_per_s": 2,
          "io_max_ops_per_s": 3, "disk_bytes_per_s": 4, "disk_ops_per_s": 5, "net_bytes_per_s": 6,
          "net_connections_per_s": 7}
WS = {"id": "ws_1", "template": "default", "vcpus": 1, "memory_mib": 512, "disk_mib": 2048,
      "labels": {"via": "sdk"}, "env_keys": ["K"], "created_at": 1, "expires_at": 601, "state": "running",
      "limits": LIMITS, "egress": {"domains": ["pypi.org"], "cidrs": []}, "published": [],
      "address": "10.0.0.2", "disk_encrypted": True}
HEALTH = {"status": "ok", "state": "ready", "version": "0.1.0", "workspaces": 0, "uptime_s": 5}


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Certs(unittest.TestCase):
    tmp: tempfile.TemporaryDirectory[str]
    cert: Cert
    other: Cert
    ca_like: Cert

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert = make_cert(cls.tmp.name, "appliance")
        cls.other = make_cert(cls.tmp.name, "impostor")
        cls.ca_like = make_cert(cls.tmp.name, "ca-like", ca_flag=True)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def server(self, cert: Cert | None = None) -> TLSServer:
        s = TLSServer(cert or self.cert)
        s.route("GET", "/v1/health", lambda r: Reply(200, HEALTH))
        s.__enter__()
        self.addCleanup(s.__exit__)
        return s

    def client(self, s: TLSServer, fingerprint: str | None = None) -> paddock.Paddock:
        c = paddock.Paddock(s.url, TOKEN, fingerprint or self.cert.fingerprint, timeout=10)
        self.addCleanup(c.close)
        return c


class Pinning(Certs):
    def test_fingerprint_forms(self) -> None:
        fp = self.cert.fingerprint
        plain = fp.replace(":", "")
        for form in (fp, fp.lower(), plain, plain.lower(), f"sha256 Fingerprint={fp}", f"SHA256:{plain}", f"  {fp}\n"):
            self.assertEqual(paddock.normalize_fingerprint(form), fp, form)
        for bad in ("", "AB:CD", plain[:-1], plain + "00", "Z" * 64):
            with self.assertRaises(paddock.ConfigError, msg=bad):
                paddock.normalize_fingerprint(bad)

    def test_the_pinned_certificate_is_accepted_and_the_token_sent(self) -> None:
        for cert in (self.cert, self.ca_like):
            s = self.server(cert)
            for form in (cert.fingerprint, cert.fingerprint.replace(":", "").lower()):
                h = self.client(s, form).health()
                self.assertEqual((h.status, h.version), ("ok", "0.1.0"))
            self.assertEqual(len(s.seen), 2)
            self.assertTrue(all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in s.seen))
            self.assertEqual(paddock.fetch_fingerprint(s.url), cert.fingerprint)

    def test_a_wrong_pin_is_refused_before_anything_is_sent(self) -> None:
        s = self.server()
        wrong = self.other.fingerprint
        with self.assertRaises(paddock.PinMismatch) as cm:
            self.client(s, wrong).list_workspaces()
        self.assertEqual(cm.exception.expected, wrong)
        self.assertEqual(cm.exception.presented, self.cert.fingerprint)
        self.assertIn(self.cert.fingerprint, str(cm.exception))
        # The server finishes its side of the handshake after the client.
        deadline = time.monotonic() + 5
        while s.handshakes < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertGreaterEqual(s.handshakes, 1)
        time.sleep(0.2)
        self.assertEqual(s.seen, [], "the server received a request despite the wrong pin")

    def test_a_certificate_changed_after_pinning_fails_the_handshake(self) -> None:
        s = self.server()
        s.close_after = True  # every request on a new connection, so a new handshake
        c = self.client(s)
        c.health()
        s.use(self.other)
        with self.assertRaises(paddock.PinMismatch):
            c.health()
        self.assertEqual(len(s.seen), 1, "a request went to the certificate that is not pinned")

    def test_async_pinning(self) -> None:
        s = self.server()

        async def go() -> None:
            async with paddock.AsyncPaddock(s.url, TOKEN, self.cert.fingerprint, timeout=10) as c:
                self.assertEqual((await c.health()).status, "ok")
            async with paddock.AsyncPaddock(s.url, TOKEN, self.other.fingerprint, timeout=10) as c:
                with self.assertRaises(paddock.PinMismatch):
                    await c.health()
            s.close_after = True
            async with paddock.AsyncPaddock(s.url, TOKEN, self.cert.fingerprint, timeout=10) as c:
                await c.health()
                s.use(self.other)
                with self.assertRaises(paddock.PinMismatch):
                    await c.health()

        asyncio.run(go())
        self.assertEqual(len(s.seen), 2)

    def test_without_a_pin_an_unknown_certificate_is_refused(self) -> None:
        s = self.server()
        c = paddock.Paddock(s.url, TOKEN, timeout=10)
        self.addCleanup(c.close)
        with self.assertRaises(paddock.ConnectionFailed) as cm:
            c.health()
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(cm.exception))
        self.assertEqual(s.seen, [])

    def test_a_ca_file_verifies_certificate_and_name(self) -> None:
        s = self.server()
        port = s.server_address[1]
        c = paddock.Paddock(f"https://localhost:{port}", TOKEN, ca_file=self.cert.cert, timeout=10)
        self.addCleanup(c.close)
        self.assertEqual(c.health().status, "ok")

    def test_urls(self) -> None:
        for bad in ("http://127.0.0.1:8443", "127.0.0.1:8443", "https://", "https://h:1/api", "https://u:p@h"):
            with self.assertRaises(paddock.ConfigError, msg=bad):
                paddock.Paddock(bad, TOKEN)
        self.assertEqual(paddock.Paddock("https://box", TOKEN).url, "https://box:8443")
        self.assertEqual(paddock.Paddock("https://[::1]:9/", TOKEN).url, "https://[::1]:9")
        self.assertNotIn(TOKEN, repr(paddock.Paddock("https://box", TOKEN)))

    def test_from_env_and_cli_config(self) -> None:
        env = {"PADDOCK_URL": "https://box:1", "PADDOCK_TOKEN": TOKEN, "PADDOCK_FINGERPRINT": self.cert.fingerprint.lower()}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            c = paddock.Paddock.from_env()
            self.assertEqual((c.url, c.fingerprint), ("https://box:1", self.cert.fingerprint))
            del os.environ["PADDOCK_TOKEN"]
            with self.assertRaises(paddock.ConfigError):
                paddock.Paddock.from_env()
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        path = os.path.join(self.tmp.name, "config.json")
        with open(path, "w") as f:
            json.dump({"url": "https://box:2", "token": TOKEN, "fingerprint": self.cert.fingerprint}, f)
        c = paddock.Paddock.from_config(path)
        self.assertEqual((c.url, c.fingerprint), ("https://box:2", self.cert.fingerprint))


class Errors(Certs):
    def test_error_bodies_map_to_exceptions(self) -> None:
        cases = [
            (400, paddock.BadRequest), (401, paddock.Unauthorized), (403, paddock.Forbidden),
            (404, paddock.NotFound), (409, paddock.Conflict), (413, paddock.PayloadTooLarge),
            (422, paddock.InvalidRequest), (429, paddock.RateLimited), (503, paddock.Unavailable),
            (504, paddock.Unavailable), (418, paddock.ApiError),
        ]
        for status, cls in cases:
            e = api_error(status, json.dumps({"error": f"why {status}"}).encode())
            self.assertIs(type(e), cls, status)
            self.assertEqual((e.status, e.message), (status, f"why {status}"))
            self.assertIn(f"why {status}", str(e))
            self.assertIn(str(status), str(e))
        self.assertEqual(api_error(418, b"").code, "http_418")
        self.assertEqual(api_error(502, b"Bad Gateway\n").message, "Bad Gateway")
        self.assertEqual(api_error(500, b"").message, "(an empty answer)")
        self.assertEqual(api_error(404, b'{"error": 5}').message, '{"error": 5}')

    def test_over_https(self) -> None:
        s = self.server()
        s.route("GET", "/v1/workspaces/ws_x", lambda r: Reply(404, {"error": "no such workspace ws_x"}))
        s.route("GET", "/v1/workspaces", lambda r: Reply(429, {"error": "8 requests in flight"}, {"Retry-After": "3"}))
        s.route("GET", "/v1/tokens", lambda r: Reply(503, raw=b"overloaded"))
        c = self.client(s)
        with self.assertRaises(paddock.NotFound) as nf:
            c.get_workspace("ws_x")
        self.assertEqual(str(nf.exception), "404 not_found: no such workspace ws_x")
        with self.assertRaises(paddock.RateLimited) as rl:
            c.list_workspaces()
        self.assertEqual(rl.exception.retry_after, 3.0)
        with self.assertRaises(paddock.Unavailable) as un:
            c.list_tokens()
        self.assertEqual(un.exception.message, "overloaded")

    def test_a_body_short_of_its_length_is_an_error(self) -> None:
        s = self.server()
        s.route("GET", "/v1/workspaces/ws_1", lambda r: Reply(200, WS, short_by=10))
        with self.assertRaises(paddock.ProtocolError):
            self.client(s).get_workspace("ws_1")

    def test_a_connection_refused_is_connection_failed(self) -> None:
        s = self.server()
        url = s.url
        s.__exit__()
        with self.assertRaises(paddock.ConnectionFailed):
            paddock.Paddock(url, TOKEN, self.cert.fingerprint, timeout=5).health()


EVENTS = [
    {"stdout": b64(b"hello \xe2\x82")},
    {"stdout": b64(b"\xac world\n")},
    {"stderr": b64(b"warn\n")},
    {"exit_code": 3, "signal": None, "timed_out": False, "duration_ms": 12},
]


class Framing(unittest.TestCase):
    def events_of(self, data: bytes, cuts: list[int]) -> list[_stream.Event]:
        d, out, last = _stream.Decoder(), [], 0
        for cut in [*cuts, len(data)]:
            out += d.feed(data[last:cut])
            last = cut
        d.close()
        return out

    def test_any_split_gives_the_same_events(self) -> None:
        data = b"".join(line(e) for e in [{"pid": 7}, *EVENTS])
        want = self.events_of(data, [])
        self.assertEqual(want[0], _stream.Started(7))
        self.assertEqual(want[1], paddock.Output("stdout", b"hello \xe2\x82"))
        self.assertEqual(want[-1], _stream.Exited(3, None, False, 12))
        for i in range(len(data) + 1):
            self.assertEqual(self.events_of(data, [i]), want, i)
        rnd = random.Random(7)
        for _ in range(200):
            cuts = sorted(rnd.sample(range(len(data)), rnd.randint(1, 30)))
            self.assertEqual(self.events_of(data, cuts), want, cuts)
        self.assertEqual(self.events_of(data, list(range(len(data)))), want)

    def test_collector_gives_whole_characters_and_the_result(self) -> None:
        got: list[str] = []
        c = _stream.Collector(got.append, None)
        data = b"".join(line(e) for e in EVENTS)
        d = _stream.Decoder()
        for b in data:
            for ev in d.feed(bytes([b])):
                for sink, text in c.add(ev):
                    sink(text)
        r = c.finish()
        self.assertEqual("".join(got), "hello € world\n")
        self.assertTrue(all("\ufffd" not in g for g in got))
        self.assertEqual((r.exit_code, r.stdout, r.stderr, r.ok), (3, "hello € world\n", "warn\n", False))
        with self.assertRaises(paddock.CommandFailed):
            r.check()

    def test_malformed_streams(self) -> None:
        for bad in (b'{"stdout": "!!"}\n', b'{"progress": 1}\n', b"[1]\n", b"not json\n", b'{"pid": null}\n',
                    b'{"exit_code": "x"}\n'):
            with self.assertRaises(paddock.ProtocolError, msg=bad):
                _stream.Decoder().feed(bad)
        d = _stream.Decoder()
        d.feed(line(EVENTS[0]) + b'{"exit_co')
        with self.assertRaises(paddock.ProtocolError):
            d.close()
        with self.assertRaises(paddock.ProtocolError):
            _stream.Collector().finish()
        with self.assertRaises(paddock.ExecError) as e:
            _stream.Collector().add(_stream.parse_line(line({"error": "no agent", "duration_ms": 1})))  # type: ignore[arg-type]
        self.assertEqual(e.exception.message, "no agent")
        self.assertEqual(_stream.Decoder().feed(b"\n \n"), [])
        ev = _stream.parse_line(line({"exit_code": None, "signal": 9, "timed_out": True, "duration_ms": 5000}))
        self.assertEqual(ev, _stream.Exited(None, 9, True, 5000))


def exec_stream(pause: float = 0.0) -> Stream:
    a = line({"stdout": b64(b"a\n")})
    b = line({"stdout": b64(b"b\n")})
    end = line({"exit_code": 0, "signal": None, "timed_out": False, "duration_ms": 2000})
    # Lines split across chunks, and two in one chunk.
    return Stream([a[:5], a[5:], pause, b + end[:9], end[9:]])


class Calls(Certs):
    def test_run_streams_output_as_it_comes(self) -> None:
        s = self.server()
        s.route("POST", "/v1/workspaces/ws_1/exec", lambda r: exec_stream(1.5))
        seen: list[tuple[float, str]] = []
        t0 = time.monotonic()
        r = self.client(s).workspace("ws_1").run(
            "echo a; sleep 2; echo b", stdin=b"in", env={"A": "1"}, cwd="/tmp", user="root", timeout_s=9,
            on_stdout=lambda t: seen.append((time.monotonic() - t0, t)),
        )
        end = time.monotonic() - t0
        self.assertEqual((r.exit_code, r.stdout), (0, "a\nb\n"))
        self.assertEqual([t for _, t in seen], ["a\n", "b\n"])
        self.assertLess(seen[0][0], end - 1.0, "the first output came only at the end")
        sent = s.seen[0].json()
        self.assertEqual(sent, {"argv": ["/bin/sh", "-c", "echo a; sleep 2; echo b"], "env": {"A": "1"}, "cwd": "/tmp",
                                "user": "root", "timeout_s": 9, "stdin": b64(b"in")})

    def test_a_cut_exec_stream_is_an_error(self) -> None:
        s = self.server()
        s.route("POST", "/v1/workspaces/ws_1/exec", lambda r: Stream([line({"stdout": b64(b"x")})], cut=True))
        with self.assertRaises(paddock.ProtocolError):
            self.client(s).workspace("ws_1").run(["true"])
        s.route("POST", "/v1/workspaces/ws_1/exec", lambda r: Stream([line({"error": "agent gone", "duration_ms": 3})]))
        with self.assertRaises(paddock.ExecError):
            self.client(s).workspace("ws_1").run(["true"])

    def test_create_is_a_context_manager_that_deletes(self) -> None:
        s = self.server()
        s.route("POST", "/v1/workspaces", lambda r: Reply(201, WS))
        s.route("DELETE", "/v1/workspaces/ws_1", lambda r: Reply(200, {"deleted": "ws_1"}))
        c = self.client(s)
        with self.assertRaises(RuntimeError):
            with c.create_workspace(ttl_s=60, memory_mib=256, labels={"via": "sdk"}, env={"K": "V"},
                                    egress={"domains": ["pypi.org"]}) as ws:
                self.assertEqual((ws.id, ws.info.limits.pids_max, ws.info.egress.domains), ("ws_1", 17, ["pypi.org"]))  # type: ignore[union-attr]
                raise RuntimeError("boom")
        self.assertEqual([(r.method, r.path) for r in s.seen], [("POST", "/v1/workspaces"), ("DELETE", "/v1/workspaces/ws_1")])
        self.assertEqual(s.seen[0].json(), {"ttl_s": 60, "memory_mib": 256, "egress": {"domains": ["pypi.org"], "cidrs": []},
                                            "env": {"K": "V"}, "labels": {"via": "sdk"}})

    def test_files(self) -> None:
        s = self.server()
        data = os.urandom(300_000)
        s.route("PUT", "/v1/workspaces/ws_1/files",
                lambda r: Reply(200, {"path": r.q("path"), "bytes": len(r.body), "mode": r.q("mode") or "644"}))
        s.route("GET", "/v1/workspaces/ws_1/files", lambda r: Stream([data[:1000], 0.05, data[1000:]], content_type="application/octet-stream"))
        s.route("GET", "/v1/workspaces/ws_1/dir", lambda r: Reply(200, {"path": r.q("path"), "entries": [
            {"name": "a.txt", "kind": "file", "size": 3, "mode": "644", "uid": 1000, "gid": 1000, "mtime": 5}]}))
        s.route("DELETE", "/v1/workspaces/ws_1/files", lambda r: Reply(200, {"deleted": r.q("path")}))
        ws = self.client(s).workspace("ws_1")
        w = ws.write_file("/tmp/a b&c", b"abc", mode=0o600)
        self.assertEqual((w.path, w.bytes, w.mode), ("/tmp/a b&c", 3, "600"))
        src = os.path.join(self.tmp.name, "src.bin")
        with open(src, "wb") as f:
            f.write(data)
        self.assertEqual(ws.upload_file(src, "/tmp/big").bytes, len(data))
        up = s.seen[-1]
        self.assertEqual((up.headers.get("content-length"), up.body == data), (str(len(data)), True))
        self.assertNotIn("transfer-encoding", up.headers)
        self.assertEqual(ws.read_file("/tmp/big"), data)
        dest = os.path.join(self.tmp.name, "dest.bin")
        self.assertEqual(ws.download_file("/tmp/big", dest), len(data))
        with open(dest, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual([e.name for e in ws.list_dir("/tmp")], ["a.txt"])
        self.assertEqual(ws.remove("/tmp/d", recursive=True), "/tmp/d")
        self.assertEqual(s.seen[-1].query, [("path", "/tmp/d"), ("recursive", "true")])
        with self.assertRaises(paddock.ConfigError):
            ws.read_file("relative")

    def test_a_cut_download_leaves_no_file(self) -> None:
        s = self.server()
        s.route("GET", "/v1/workspaces/ws_1/files", lambda r: Stream([b"x" * 100], content_type="application/octet-stream", cut=True))
        dest = os.path.join(self.tmp.name, "cut.bin")
        with self.assertRaises(paddock.ProtocolError):
            self.client(s).workspace("ws_1").download_file("/f", dest)
        self.assertFalse(os.path.exists(dest))
        self.assertEqual([n for n in os.listdir(self.tmp.name) if n.startswith(".paddock-")], [])

    def test_processes(self) -> None:
        s = self.server()
        s.route("POST", "/v1/workspaces/ws_1/processes", lambda r: Stream([
            line({"pid": 42}), 0.2, line({"stdout": b64(b"got:hi\n")}),
            line({"exit_code": None, "signal": 9, "timed_out": False, "duration_ms": 7})]))
        for op in ("input", "close-input", "signal", "resize"):
            s.route("POST", f"/v1/workspaces/ws_1/processes/42/{op}", lambda r: Reply(200, {}))
        ws = self.client(s).workspace("ws_1")
        with ws.spawn(["sh", "-c", "read l; echo got:$l"], stdin=True, tag="t", pty=(80, 24)) as p:
            self.assertEqual(p.pid, 42)
            p.send_input("hi\n")
            p.close_input()
            p.resize(100, 30)
            p.kill()
            r = p.wait()
        self.assertEqual((r.exit_code, r.signal, r.stdout), (None, 9, "got:hi\n"))
        sent = {x.path.rsplit("/", 1)[-1]: x.body for x in s.seen}
        self.assertEqual(json.loads(sent["processes"]), {"argv": ["sh", "-c", "read l; echo got:$l"], "tag": "t",
                                                          "pty": {"cols": 80, "rows": 24}, "stdin": True})
        self.assertEqual(sent["input"], b"hi\n")
        self.assertEqual(json.loads(sent["signal"]), {"signal": 9})
        self.assertEqual(json.loads(sent["resize"]), {"cols": 100, "rows": 30})

    def test_tokens_events_and_links(self) -> None:
        s = self.server()
        s.route("POST", "/v1/tokens", lambda r: Reply(201, {"id": "tok_1", "secret": "pdk_s", "scopes": ["exec"],
                                                           "expires_at": 9, "note": "shown once"}))
        s.route("GET", "/v1/audit", lambda r: Reply(200, {"events": [
            {"ts": 1, "event": "exec_started", "workspace": "ws_1", "token": "tok_1", "argv0": "uname"}]}))
        s.route("POST", "/v1/links", lambda r: Reply(201, {"id": "lnk_1", "from": "ws_1", "to": "ws_2", "port": 80,
                                                          "created_at": 3, "to_address": "10.0.0.3"}))
        c = self.client(s)
        t = c.create_token("agent", ["exec"], workspace_ids=[c.workspace("ws_1")], quotas={"max_workspaces": 2})
        self.assertEqual((t.id, t.secret), ("tok_1", "pdk_s"))
        self.assertNotIn("pdk_s", repr(t))
        self.assertEqual(s.seen[-1].json(), {"name": "agent", "scopes": ["exec"], "quotas": {"max_workspaces": 2},
                                             "workspace_ids": ["ws_1"]})
        (e,) = c.events(workspace="ws_1", event="exec_started", limit=5)
        self.assertEqual((e.event, e.workspace, e.token, e.get("argv0"), e.ts), ("exec_started", "ws_1", "tok_1", "uname", 1.0))
        self.assertEqual(s.seen[-1].query, [("event", "exec_started"), ("workspace", "ws_1"), ("limit", "5")])
        link = c.create_link("ws_1", "ws_2", 80)
        self.assertEqual((link.from_, link.to_address), ("ws_1", "10.0.0.3"))
        self.assertEqual(s.seen[-1].json(), {"from": "ws_1", "to": "ws_2", "port": 80})

    def test_an_ask_raises_approval_pending_and_can_be_followed(self) -> None:
        pending = {"id": "apr_1", "workspace": "ws_1", "kind": "publish_port", "port": 8080,
                   "asked_by": "tok_1", "reason": "demo", "state": "pending", "asked_at": 5, "asks": 1}
        decided = {**pending, "state": "approved", "host_port": 20001, "decided_by": "tok_bootstrap",
                   "decided_at": 6, "expires_at": 3606}
        answers = [pending, decided]
        s = self.server()
        s.route("POST", "/v1/workspaces/ws_1/ports", lambda r: Reply(202, pending))
        s.route("POST", "/v1/workspaces/ws_1/ttl", lambda r: Reply(202, {**pending, "kind": "extend_ttl",
                                                                        "port": None, "ttl_s": 7200}))
        s.route("GET", "/v1/approvals/apr_1", lambda r: Reply(200, answers.pop(0) if len(answers) > 1 else answers[0]))
        c = self.client(s)
        ws = c.workspace("ws_1")
        with self.assertRaises(paddock.ApprovalPending) as asked:
            ws.publish_port(8080, reason="demo")
        self.assertEqual((asked.exception.approval.kind, asked.exception.approval.port), ("publish_port", 8080))
        self.assertIn("apr_1", str(asked.exception))
        self.assertEqual(s.seen[-1].json(), {"port": 8080, "reason": "demo"})
        with self.assertRaises(paddock.ApprovalPending) as asked:
            ws.set_ttl(7200)
        self.assertEqual(asked.exception.approval.ttl_s, 7200)
        done = c.wait_for_approval("apr_1", poll_s=0.01)
        self.assertEqual((done.state, done.host_port), ("approved", 20001))

        async def follow() -> paddock.Approval:
            async with paddock.AsyncPaddock(s.url, TOKEN, self.cert.fingerprint, timeout=10) as a:
                with self.assertRaises(paddock.ApprovalPending):
                    await a.workspace("ws_1").publish_port(8080)
                return await a.wait_for_approval("apr_1", poll_s=0.01)

        self.assertEqual(asyncio.run(follow()).state, "approved")

    def test_async_create_run_delete(self) -> None:
        s = self.server()
        s.route("POST", "/v1/workspaces", lambda r: Reply(201, WS))
        s.route("POST", "/v1/workspaces/ws_1/exec", lambda r: exec_stream(0.3))
        s.route("DELETE", "/v1/workspaces/ws_1", lambda r: Reply(404, {"error": "gone already"}))

        async def go() -> list[paddock.RunResult]:
            async with paddock.AsyncPaddock(s.url, TOKEN, self.cert.fingerprint, timeout=10) as c:
                async def one() -> paddock.RunResult:
                    got: list[str] = []

                    async def sink(t: str) -> None:
                        got.append(t)

                    async with c.create_workspace(ttl_s=60) as ws:
                        r = await ws.run("x", on_stdout=sink)
                    self.assertEqual(got, ["a\n", "b\n"])
                    return r

                return list(await asyncio.gather(one(), one()))

        results = asyncio.run(go())
        self.assertEqual([r.stdout for r in results], ["a\nb\n", "a\nb\n"])
        self.assertEqual(sum(r.method == "DELETE" for r in s.seen), 2)

    def test_secrets_are_set_listed_and_removed_and_never_shown(self) -> None:
        value = "sk-" + "9" * 20
        shown = {"name": "API_KEY", "placeholder": "PADDOCK_SECRET_ab12", "hosts": ["api.example.com"],
                 "header": "Authorization", "format": "Bearer {}", "replace_in": ["headers", "query"],
                 "allow_plain_http": False, "upstream_ca": True, "updated_at": 7}
        s = self.server()
        s.route("PUT", "/v1/workspaces/ws_1/secrets/API_KEY", lambda r: Reply(201, shown))
        s.route("GET", "/v1/workspaces/ws_1/secrets",
                lambda r: Reply(200, {"secrets": [shown], "egress_ca": "-----BEGIN CERTIFICATE-----\n"}))
        s.route("DELETE", "/v1/workspaces/ws_1/secrets/API_KEY",
                lambda r: Reply(200, {"workspace": "ws_1", "removed": "API_KEY"}))
        ws = self.client(s).workspace("ws_1")
        got = ws.set_secret("API_KEY", value, hosts="api.example.com", header="Authorization", format="Bearer {}",
                            replace_in=["headers", "query"], upstream_ca="-----BEGIN CERTIFICATE-----\n")
        self.assertEqual(s.seen[-1].json(), {"value": value, "hosts": ["api.example.com"], "header": "Authorization",
                                             "format": "Bearer {}", "replace_in": ["headers", "query"],
                                             "allow_plain_http": False,
                                             "upstream_ca": "-----BEGIN CERTIFICATE-----\n"})
        self.assertEqual((got.placeholder, got.replace_in, got.upstream_ca), ("PADDOCK_SECRET_ab12", ["headers", "query"], True))
        (listed,) = ws.secrets()
        self.assertEqual(listed, got)
        self.assertTrue(ws.egress_ca().startswith("-----BEGIN CERTIFICATE-----"))
        self.assertEqual(ws.remove_secret("API_KEY"), "API_KEY")
        self.assertEqual([(r.method, r.path) for r in s.seen][-1], ("DELETE", "/v1/workspaces/ws_1/secrets/API_KEY"))
        # The value is in no repr, alone or inside a workspace spec.
        spec = paddock.SecretSpec(value, ["api.example.com"], upstream_ca="PEM")
        self.assertNotIn(value, repr(spec))
        self.assertIn("value='(hidden)'", repr(spec))
        self.assertIn("upstream_ca=True", repr(spec))
        self.assertNotIn(value, repr(paddock.models.WorkspaceSpec(ttl_s=60, secrets={"K": spec})))
        with self.assertRaises(paddock.ConfigError):
            ws.set_secret("K", "", hosts=["a.example"])
        with self.assertRaises(paddock.ConfigError):
            self.client(s).create_workspace(ttl_s=60, secrets={"K": {"value": "v", "hosts": ["a"], "bogus": 1}})

        async def go() -> tuple[paddock.Secret, list[paddock.Secret], str]:
            async with paddock.AsyncPaddock(s.url, TOKEN, self.cert.fingerprint, timeout=10) as c:
                aws = c.workspace("ws_1")
                return (await aws.set_secret("API_KEY", value, hosts=["api.example.com"]), await aws.secrets(),
                        await aws.remove_secret("API_KEY"))

        a_set, a_listed, a_removed = asyncio.run(go())
        self.assertEqual((a_set, a_listed, a_removed), (got, [got], "API_KEY"))
        put = [r for r in s.seen if r.method == "PUT"][-1]
        self.assertEqual(put.json(), {"value": value, "hosts": ["api.example.com"], "allow_plain_http": False})

    def test_create_with_secrets_and_what_the_network_log_counts(self) -> None:
        s = self.server()
        s.route("POST", "/v1/workspaces", lambda r: Reply(201, {**WS, "secrets": ["GH"]}))
        s.route("GET", "/v1/workspaces/ws_1/network", lambda r: Reply(200, {"records": [
            {"from": 60, "to": 120, "kind": "tcp", "name": "api.github.com", "decision": "allowed",
             "reason": "allowlist", "count": 3, "secrets_injected": 3, "secret_misuse": 1}]}))
        c = self.client(s)
        ws = c.create_workspace(ttl_s=60, secrets={
            "GH": {"value": "ghp_x", "hosts": ["api.github.com"], "header": "Authorization", "format": "token {}"},
            "NPM": paddock.SecretSpec("npm_y", ["registry.npmjs.org"], replace_in=["headers", "body"]),
        })
        self.assertEqual(ws.info.secrets, ["GH"])  # type: ignore[union-attr]
        self.assertEqual(s.seen[-1].json()["secrets"], {
            "GH": {"value": "ghp_x", "hosts": ["api.github.com"], "header": "Authorization", "format": "token {}",
                   "allow_plain_http": False},
            "NPM": {"value": "npm_y", "hosts": ["registry.npmjs.org"], "replace_in": ["headers", "body"],
                    "allow_plain_http": False},
        })
        (r,) = ws.network_log()
        self.assertEqual((r.secrets_injected, r.secret_misuse, r.mismatched), (3, 1, 0))
        # An appliance from before secrets: no names, no counts.
        self.assertEqual(_wire.from_json(paddock.WorkspaceInfo, WS).secrets, [])

    def test_the_route_table_is_enforced(self) -> None:
        t = paddock.Paddock("https://box", TOKEN)._t
        with self.assertRaises(TypeError):
            t.prepare("list_workspaces", query=[("labels", "a=b")])
        with self.assertRaises(TypeError):
            t.prepare("create_workspace", body=paddock.Egress())
        with self.assertRaises(TypeError):
            t.prepare("get_workspace")
        p = t.prepare("get_workspace", {"id": "a/b"})
        self.assertEqual(p.path, "/v1/workspaces/a%2Fb")


if __name__ == "__main__":
    unittest.main()
