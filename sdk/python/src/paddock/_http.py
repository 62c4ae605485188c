"""The transport: HTTPS to the appliance with httpx, the pinned TLS
context of :mod:`paddock._pin`, the bearer token, the route table of
:mod:`paddock._routes`, and the mapping of failures to
:mod:`paddock.errors`.

No redirect is followed and nothing is taken from the environment (no
proxy, no ``.netrc``): a request goes to the pinned appliance or nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from . import _wire
from ._pin import Tls, is_verification_failure
from ._routes import ROUTES, Route
from .errors import (
    ApprovalPending,
    ConfigError,
    ConnectionFailed,
    PaddockError,
    PinMismatch,
    ProtocolError,
    RequestTimeout,
    api_error,
)

from .review_models import Approval

__version__ = "0.1.0"

DEFAULT_PORT = 8443
"""The appliance's API port, used when a URL names none (as the CLI does)."""

QueryValue = str | int | bool | None
Query = Sequence[tuple[str, QueryValue]]
Content = bytes | Iterable[bytes] | AsyncIterator[bytes] | None

# httpx closes idle connections after 5 s; the appliance closes them after
# 10 s, so a kept-alive connection is never reused as the server drops it.
_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=8, keepalive_expiry=5.0)


def parse_url(url: str) -> tuple[str, str, int]:
    """``(base_url, host, port)`` of ``https://HOST[:PORT][/]``; the port
    defaults to 8443. Anything but https is refused: the URL carries a
    bearer token."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{url!r} is not an https://HOST:PORT URL: {e}") from e
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"{url!r} is not an https://HOST:PORT URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{url!r} is not an https://HOST:PORT URL")
    host = parts.hostname
    port = port or DEFAULT_PORT
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}", host, port


def _qvalue(v: str | int | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class Prepared:
    """A request resolved against the route table."""

    def __init__(self, route: Route, path: str, query: list[tuple[str, str]], headers: dict[str, str], content: Content) -> None:
        self.route = route
        self.path = path
        self.query = query
        self.headers = headers
        self.content = content


class _Base:
    """What the sync and async transports share: building requests from
    the route table, timeouts, answers and errors."""

    def __init__(self, url: str, token: str, fingerprint: str | None, ca_file: str | None, timeout: float, tls: Tls | None = None) -> None:
        if not token:
            raise ConfigError("no token given")
        self.base_url, host, port = parse_url(url)
        self.tls = tls if tls is not None else Tls(host, port, fingerprint, ca_file)
        self.token = token
        self.timeout = float(timeout)

    def prepare(
        self,
        name: str,
        params: Mapping[str, str | int] | None = None,
        *,
        query: Query = (),
        body: Any = None,
        content: Content = None,
        headers: Mapping[str, str] | None = None,
    ) -> Prepared:
        """The request for route ``name``; refuses what the route does not
        declare (so the route table is the truth about what is sent)."""
        route = ROUTES[name]
        values = {k: quote(str(v), safe="") for k, v in (params or {}).items()}
        try:
            path = route.path.format(**values)
        except KeyError as e:
            raise TypeError(f"route {name}: path parameter {e} missing") from e
        q: list[tuple[str, str]] = []
        for key, value in query:
            if key not in route.query:
                raise TypeError(f"route {name} has no query parameter {key!r}")
            if value is not None:
                q.append((key, _qvalue(value)))
        h = {"Authorization": f"Bearer {self.token}", "User-Agent": f"paddock-python/{__version__}"}
        h.update(headers or {})
        if body is not None:
            if route.body is None or not isinstance(body, route.body):
                raise TypeError(f"route {name} takes {route.body}, not {type(body).__name__}")
            content = json.dumps(_wire.to_json(body), separators=(",", ":")).encode()
            h["Content-Type"] = "application/json"
        elif content is not None:
            if not route.raw_body:
                raise TypeError(f"route {name} takes no raw body")
            h.setdefault("Content-Type", "application/octet-stream")
        elif route.body is not None:
            raise TypeError(f"route {name} needs a {route.body.__name__} body")
        return Prepared(route, path, q, h, content)

    def timeouts(self, timeout: float | None, *, stream: bool = False, read: float | None = None) -> httpx.Timeout:
        """``timeout`` (or the client's) for every phase; for a ``stream``,
        each read waits ``read`` seconds (``None``: as long as it takes)."""
        t = self.timeout if timeout is None else float(timeout)
        return httpx.Timeout(t, read=read) if stream else httpx.Timeout(t)

    @contextlib.contextmanager
    def mapped(self) -> Iterator[None]:
        """Transport failures as the SDK's exceptions."""
        try:
            yield
        except PaddockError:
            raise
        except httpx.TimeoutException as e:
            raise RequestTimeout(f"{self.base_url}: timed out ({type(e).__name__})") from e
        except (httpx.RemoteProtocolError, httpx.DecodingError) as e:
            raise ProtocolError(f"{self.base_url}: the answer was cut off or malformed: {e}") from e
        except httpx.TransportError as e:
            if self.tls.fingerprint is not None and is_verification_failure(e):
                raise PinMismatch(self.tls.fingerprint, None, str(e)) from e
            raise ConnectionFailed(f"{self.base_url}: {e or type(e).__name__}") from e

    def checked(self, resp: httpx.Response) -> None:
        """The guard behind the handshake: the answer came from the pinned
        certificate's holder."""
        stream = resp.extensions.get("network_stream")
        if stream is not None:
            self.tls.check_peer(stream.get_extra_info("ssl_object"))

    @staticmethod
    def framed(resp: httpx.Response) -> None:
        """A body to keep must have a length or be chunked: one that ends
        with its connection cannot be told from one cut short."""
        te = resp.headers.get("transfer-encoding", "").lower()
        if "chunked" not in te and "content-length" not in resp.headers:
            raise ProtocolError("the answer has neither a length nor chunks; its end cannot be trusted")

    @staticmethod
    def error(resp: httpx.Response, body: bytes) -> PaddockError:
        return api_error(resp.status_code, body, resp.headers.get("retry-after"))

    @staticmethod
    def answer(route: Route, resp: httpx.Response, body: bytes) -> Any:
        """What a 2xx answer says, read as the route declares."""
        if route.answer == "text":
            return body.decode("utf-8", "replace")
        if route.answer == "bytes":
            return body
        try:
            value = json.loads(body) if body.strip() else None
        except ValueError as e:
            raise ProtocolError(f"the answer is not JSON: {body[:200]!r}") from e
        if route.answer == "none":
            return value
        if route.asks and resp.status_code == 202:
            raise ApprovalPending(_wire.from_json(Approval, value))
        assert route.model is not None
        return _wire.from_json(route.model, value)


class SyncTransport(_Base):
    """The blocking transport (one ``httpx.Client``, made on first use,
    after the pin was checked)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                ctx = self.tls.context(self.timeout)
                self._client = httpx.Client(
                    base_url=self.base_url, verify=ctx, trust_env=False, follow_redirects=False, limits=_LIMITS
                )
            return self._client

    def _send(self, p: Prepared, timeout: httpx.Timeout) -> httpx.Response:
        client = self.http()
        req = client.build_request(
            p.route.method, p.path, params=p.query, headers=p.headers, content=p.content, timeout=timeout  # type: ignore[arg-type]
        )
        return client.send(req, stream=True)

    def call(self, name: str, params: Mapping[str, str | int] | None = None, *, timeout: float | None = None, **kw: Any) -> Any:
        """A request and its whole answer, read as the route declares."""
        p = self.prepare(name, params, **kw)
        with self.mapped():
            resp = self._send(p, self.timeouts(timeout))
            try:
                self.checked(resp)
                if p.route.answer == "bytes" and resp.status_code < 300:
                    self.framed(resp)
                body = resp.read()
            finally:
                resp.close()
        if resp.status_code >= 300:
            raise self.error(resp, body)
        return self.answer(p.route, resp, body)

    def open(self, name: str, params: Mapping[str, str | int] | None = None, *, timeout: float | None = None, stream_timeout: float | None = None, **kw: Any) -> httpx.Response:
        """A request whose 2xx answer is left open to be streamed (the
        caller closes it); an error answer raises."""
        p = self.prepare(name, params, **kw)
        with self.mapped():
            resp = self._send(p, self.timeouts(timeout, stream=True, read=stream_timeout))
            try:
                self.checked(resp)
                if resp.status_code >= 300:
                    raise self.error(resp, resp.read())
                if p.route.answer == "bytes":
                    self.framed(resp)
            except BaseException:
                resp.close()
                raise
        return resp

    def chunks(self, resp: httpx.Response) -> Iterator[bytes]:
        """An open answer's body as it arrives, failures mapped."""
        with self.mapped():
            yield from resp.iter_bytes()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class AsyncTransport(_Base):
    """The asyncio transport (one ``httpx.AsyncClient``); the pin's one
    blocking handshake runs in a worker thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: httpx.AsyncClient | None = None

    async def http(self) -> httpx.AsyncClient:
        if self._client is None:
            ctx = await asyncio.to_thread(self.tls.context, self.timeout)
            if self._client is None:
                self._client = httpx.AsyncClient(
                    base_url=self.base_url, verify=ctx, trust_env=False, follow_redirects=False, limits=_LIMITS
                )
        return self._client

    async def _send(self, p: Prepared, timeout: httpx.Timeout) -> httpx.Response:
        client = await self.http()
        req = client.build_request(
            p.route.method, p.path, params=p.query, headers=p.headers, content=p.content, timeout=timeout  # type: ignore[arg-type]
        )
        return await client.send(req, stream=True)

    async def call(self, name: str, params: Mapping[str, str | int] | None = None, *, timeout: float | None = None, **kw: Any) -> Any:
        """A request and its whole answer, read as the route declares."""
        p = self.prepare(name, params, **kw)
        with self.mapped():
            resp = await self._send(p, self.timeouts(timeout))
            try:
                self.checked(resp)
                if p.route.answer == "bytes" and resp.status_code < 300:
                    self.framed(resp)
                body = await resp.aread()
            finally:
                await resp.aclose()
        if resp.status_code >= 300:
            raise self.error(resp, body)
        return self.answer(p.route, resp, body)

    async def open(self, name: str, params: Mapping[str, str | int] | None = None, *, timeout: float | None = None, stream_timeout: float | None = None, **kw: Any) -> httpx.Response:
        """A request whose 2xx answer is left open to be streamed (the
        caller closes it); an error answer raises."""
        p = self.prepare(name, params, **kw)
        with self.mapped():
            resp = await self._send(p, self.timeouts(timeout, stream=True, read=stream_timeout))
            try:
                self.checked(resp)
                if resp.status_code >= 300:
                    raise self.error(resp, await resp.aread())
                if p.route.answer == "bytes":
                    self.framed(resp)
            except BaseException:
                await resp.aclose()
                raise
        return resp

    async def chunks(self, resp: httpx.Response) -> AsyncIterator[bytes]:
        """An open answer's body as it arrives, failures mapped."""
        with self.mapped():
            async for chunk in resp.aiter_bytes():
                yield chunk

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
