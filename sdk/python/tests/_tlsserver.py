"""A tiny HTTPS server on 127.0.0.1 for the offline tests: it records every
request it gets (so a test can assert what was, and was not, sent) and
answers from a table of handlers. Its certificates are throwaway ones made
with the ``openssl`` command line tool."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Cert:
    cert: str
    key: str
    der: bytes

    @property
    def fingerprint(self) -> str:
        d = hashlib.sha256(self.der).hexdigest().upper()
        return ":".join(d[i : i + 2] for i in range(0, 64, 2))


def make_cert(directory: str, name: str, ca_flag: bool = False) -> Cert:
    """A self-signed ECDSA P-256 certificate for paddock and localhost:
    without extensions beyond the names, as the appliance's (rcgen) is, or
    with ``CA:TRUE`` as ``openssl req -x509`` makes them."""
    key, cert = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.pem")

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    if ca_flag:
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
            "-addext", "subjectAltName=DNS:paddock,DNS:localhost")
    else:
        csr, ext = os.path.join(directory, f"{name}.csr"), os.path.join(directory, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:paddock,DNS:localhost\n")
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        run("openssl", "x509", "-req", "-in", csr, "-signkey", key, "-days", "2", "-out", cert, "-extfile", ext)
    with open(cert) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return Cert(cert, key, der)


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    raw_head: str

    def json(self) -> Any:
        return json.loads(self.body)

    def q(self, key: str) -> str | None:
        return next((v for k, v in self.query if k == key), None)


@dataclass
class Stream:
    """A chunked answer: each piece is sent as one chunk (``bytes``), or is
    a pause (``float`` seconds); ``cut`` ends without the last chunk."""

    pieces: Iterable[bytes | float]
    status: int = 200
    content_type: str = "application/x-ndjson"
    cut: bool = False


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    # Send fewer bytes than the Content-Length says, then close.
    short_by: int = 0


Handler = Callable[[Request], Reply | Stream]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TLSServer

    def setup(self) -> None:
        self.request.settimeout(10)
        try:
            self.request.do_handshake()
        finally:
            self.server.handshakes += 1
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n else b""

    def _any(self) -> None:
        parts = urlsplit(self.path)
        req = Request(
            self.command,
            parts.path,
            parse_qsl(parts.query, keep_blank_values=True),
            {k.lower(): v for k, v in self.headers.items()},
            self._body(),
            self.requestline + "\r\n" + str(self.headers),
        )
        self.server.seen.append(req)
        handler = self.server.routes.get((req.method, req.path))
        answer = handler(req) if handler else Reply(404, {"error": f"no route {req.method} {req.path}"})
        close = self.server.close_after
        if isinstance(answer, Stream):
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            if close or answer.cut:
                self.send_header("Connection", "close")
            self.end_headers()
            for piece in answer.pieces:
                if isinstance(piece, float):
                    time.sleep(piece)
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            if answer.cut:
                self.close_connection = True
                self.request.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"0\r\n\r\n")
        else:
            body = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            if answer.raw is None:
                self.send_header("Content-Type", "application/json")
            for k, v in answer.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            if close or answer.short_by:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) - answer.short_by])
            if answer.short_by:
                self.close_connection = True
                self.request.shutdown(socket.SHUT_RDWR)
                return
        self.wfile.flush()
        if close:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _any


class TLSServer(ThreadingHTTPServer):
    """``with TLSServer(cert) as s:`` serves on ``s.url`` until the end."""

    daemon_threads = True

    def __init__(self, cert: Cert) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Request] = []
        self.errors: list[BaseException] = []
        self.handshakes = 0
        self.routes: dict[tuple[str, str], Handler] = {}
        self.close_after = False
        self.use(cert)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def use(self, cert: Cert) -> None:
        """Presents ``cert`` from the next connection on."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert.cert, cert.key)
        self.ctx = ctx

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def __enter__(self) -> TLSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
