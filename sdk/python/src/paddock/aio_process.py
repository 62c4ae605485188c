"""A process that outlives the call that started it (asyncio client)."""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from . import _stream
from .errors import ProtocolError
from .models import Output, PtySize, RunResult, SignalRequest
from .process import SIGKILL, SIGTERM

if TYPE_CHECKING:
    from .aio_workspace import AsyncWorkspace

AsyncTextSink = Callable[[str], object | Awaitable[object]]
"""A callback for output text: a function, or a coroutine function."""


async def call_sink(sink: AsyncTextSink, text: str) -> None:
    """Calls ``sink`` with ``text``, awaiting it if it is a coroutine."""
    result = sink(text)
    if inspect.isawaitable(result):
        await result


class AsyncProcess:
    """The asyncio twin of :class:`paddock.Process`: a process started by
    :meth:`AsyncWorkspace.spawn` or found again by
    :meth:`AsyncWorkspace.attach`, with its output stream open. Leaving the
    stream (:meth:`detach`, the end of an ``async with``) leaves it running.
    """

    def __init__(self, workspace: AsyncWorkspace, response: httpx.Response, tag: str | None = None) -> None:
        self.workspace = workspace
        self.tag = tag
        self.pid = 0
        self.result: RunResult | None = None
        """How it ended, once this handle has read its exit status."""
        self._resp: httpx.Response | None = response
        self._chunks = workspace._t.chunks(response)
        self._decoder = _stream.Decoder()
        self._pending: deque[_stream.Event] = deque()
        self._collector = _stream.Collector()

    async def _start(self) -> AsyncProcess:
        try:
            ev = await self._next_event()
            if not isinstance(ev, _stream.Started):
                raise ProtocolError(f"a process stream began with {ev!r}, not its pid")
            self.pid = ev.pid
            return self
        except BaseException:
            await self.detach()
            raise

    async def _next_event(self) -> _stream.Event | None:
        while not self._pending:
            if self._resp is None:
                return None
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._decoder.close()
                await self.detach()
                return None
            self._pending.extend(self._decoder.feed(chunk))
        return self._pending.popleft()

    async def output(self) -> AsyncIterator[Output]:
        """The output as it arrives, until the process ends (then
        :attr:`result` is set) or the stream is left."""
        while True:
            ev = await self._next_event()
            if ev is None:
                if self.result is None:
                    self._collector.finish()
                return
            try:
                self._collector.add(ev)
            except BaseException:
                await self.detach()
                raise
            if isinstance(ev, Output):
                yield ev
            elif isinstance(ev, _stream.Exited):
                self.result = self._collector.finish()
                await self.detach()
                return

    async def wait(self, on_stdout: AsyncTextSink | None = None, on_stderr: AsyncTextSink | None = None) -> RunResult:
        """Reads the stream to the process's end: its exit status and the
        output seen by this handle."""
        sinks = {"stdout": on_stdout, "stderr": on_stderr}
        async for out in self.output():
            sink = sinks[out.stream]
            if sink is not None:
                await call_sink(sink, out.text)
        assert self.result is not None
        return self.result

    async def send_input(self, data: bytes | str) -> None:
        """Bytes (at most 64 KiB a call) for its stdin or terminal (``POST
        .../processes/{pid}/input``)."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        await self.workspace._t.call("process_input", self._params(), content=raw)

    async def close_input(self) -> None:
        """Ends its stdin (``POST .../processes/{pid}/close-input``)."""
        await self.workspace._t.call("close_input", self._params())

    async def signal(self, signal: int) -> None:
        """Sends ``signal`` (1-64) to its process group (``POST
        .../processes/{pid}/signal``)."""
        await self.workspace._t.call("signal_process", self._params(), body=SignalRequest(int(signal)))

    async def kill(self) -> None:
        """SIGKILL to its process group."""
        await self.signal(SIGKILL)

    async def terminate(self) -> None:
        """SIGTERM to its process group."""
        await self.signal(SIGTERM)

    async def resize(self, cols: int, rows: int) -> None:
        """A new size for its terminal (``POST .../processes/{pid}/resize``)."""
        await self.workspace._t.call("resize_process", self._params(), body=PtySize(int(cols), int(rows)))

    async def detach(self) -> None:
        """Leaves the output stream; the process keeps running."""
        resp, self._resp = self._resp, None
        if resp is not None:
            await resp.aclose()

    def _params(self) -> dict[str, str | int]:
        return {"id": self.workspace.id, "pid": self.pid}

    async def __aenter__(self) -> AsyncProcess:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        await self.detach()

    def __repr__(self) -> str:
        return f"AsyncProcess(workspace={self.workspace.id!r}, pid={self.pid}, tag={self.tag!r})"
