"""A process that outlives the call that started it (blocking client):
``/v1/workspaces/{id}/processes``."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from . import _stream
from .errors import ProtocolError
from .models import Output, PtySize, RunResult, SignalRequest

if TYPE_CHECKING:
    from .workspace import Workspace

SIGKILL = 9
SIGTERM = 15


class Process:
    """A process started by :meth:`Workspace.spawn` or found again by
    :meth:`Workspace.attach`, with the output stream this handle watches.

    Read its output with :meth:`output` or :meth:`wait`; the appliance drops
    a watcher that stops reading for 30 s (the process goes on) and an open
    stream counts as one of the tenant's 8 requests in flight. Leaving the
    stream (:meth:`detach`, or the end of a ``with`` block) leaves the
    process running; :meth:`kill` ends it.
    """

    def __init__(self, workspace: Workspace, response: httpx.Response, tag: str | None = None) -> None:
        self.workspace = workspace
        self.tag = tag
        self.result: RunResult | None = None
        """How it ended, once this handle has read its exit status."""
        self._resp: httpx.Response | None = response
        self._chunks = workspace._t.chunks(response)
        self._decoder = _stream.Decoder()
        self._pending: deque[_stream.Event] = deque()
        self._collector = _stream.Collector()
        self.pid = self._read_pid()

    def _next_event(self) -> _stream.Event | None:
        while not self._pending:
            if self._resp is None:
                return None
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._decoder.close()
                self.detach()
                return None
            self._pending.extend(self._decoder.feed(chunk))
        return self._pending.popleft()

    def _read_pid(self) -> int:
        try:
            ev = self._next_event()
            if isinstance(ev, _stream.Started):
                return ev.pid
            raise ProtocolError(f"a process stream began with {ev!r}, not its pid")
        except BaseException:
            self.detach()
            raise

    def output(self) -> Iterator[Output]:
        """The output as it arrives, until the process ends (then
        :attr:`result` is set) or the stream is left. Raises
        :class:`~paddock.errors.ExecError` if the watch broke."""
        while True:
            ev = self._next_event()
            if ev is None:
                if self.result is None:
                    self._collector.finish()
                return
            try:
                self._collector.add(ev)
            except BaseException:
                self.detach()
                raise
            if isinstance(ev, Output):
                yield ev
            elif isinstance(ev, _stream.Exited):
                self.result = self._collector.finish()
                self.detach()
                return

    def wait(self, on_stdout: _stream.TextSink | None = None, on_stderr: _stream.TextSink | None = None) -> RunResult:
        """Reads the stream to the process's end: its exit status and the
        output seen by this handle (callbacks get it as text as it comes)."""
        sinks = {"stdout": on_stdout, "stderr": on_stderr}
        for out in self.output():
            sink = sinks[out.stream]
            if sink is not None:
                sink(out.text)
        assert self.result is not None
        return self.result

    def send_input(self, data: bytes | str) -> None:
        """Bytes (at most 64 KiB a call) for its stdin or terminal
        (``POST .../processes/{pid}/input``); text is sent as UTF-8. A
        process that does not take them within 20 s fails the call."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self.workspace._t.call("process_input", self._params(), content=raw)

    def close_input(self) -> None:
        """Ends its stdin (``POST .../processes/{pid}/close-input``); a
        terminal takes ``"\\x04"`` (^D) as input instead."""
        self.workspace._t.call("close_input", self._params())

    def signal(self, signal: int) -> None:
        """Sends ``signal`` (1-64) to its process group
        (``POST .../processes/{pid}/signal``)."""
        self.workspace._t.call("signal_process", self._params(), body=SignalRequest(int(signal)))

    def kill(self) -> None:
        """SIGKILL to its process group."""
        self.signal(SIGKILL)

    def terminate(self) -> None:
        """SIGTERM to its process group."""
        self.signal(SIGTERM)

    def resize(self, cols: int, rows: int) -> None:
        """A new size for its terminal (``POST .../processes/{pid}/resize``);
        its programs get SIGWINCH."""
        self.workspace._t.call("resize_process", self._params(), body=PtySize(int(cols), int(rows)))

    def detach(self) -> None:
        """Leaves the output stream; the process keeps running."""
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.close()

    def _params(self) -> dict[str, str | int]:
        return {"id": self.workspace.id, "pid": self.pid}

    def __enter__(self) -> Process:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"Process(workspace={self.workspace.id!r}, pid={self.pid}, tag={self.tag!r})"
