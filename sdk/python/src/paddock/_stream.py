"""The exec and process streams' framing (docs/api.md, "Processes and
terminals"): NDJSON, one JSON object per ``\\n``-terminated line, carried in
HTTP chunks that need not end on a line (a line may span chunks, a chunk
may hold several lines). The lines are told apart by their keys, in this
order, as the API's own client does:

* ``{"pid": N}``: a process stream's first line (an exec's has none);
* ``{"stdout": base64}`` / ``{"stderr": base64}``: output, as produced;
* ``{"error": "...", "duration_ms": N}``: the command or the watch failed;
* ``{"exit_code": N|null, "signal": N|null, "timed_out": bool,
  "duration_ms": N}``: how it ended (``exit_code`` present, null when a
  signal ended it).

Anything else is a :class:`~paddock.errors.ProtocolError`, as is a stream
that ends inside a line. This module does no I/O: the clients feed it the
bytes as they arrive.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
from dataclasses import dataclass
from collections.abc import Callable
from typing import Literal

from .errors import ExecError, ProtocolError
from .models import Output, RunResult

# A line holds one chunk of output, base64: far below this.
MAX_LINE = 64 << 20


@dataclass(frozen=True)
class Started:
    pid: int


@dataclass(frozen=True)
class Exited:
    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration_ms: int


@dataclass(frozen=True)
class Failed:
    error: str
    duration_ms: int


Event = Started | Output | Exited | Failed


def _int(obj: dict[str, object], key: str, line: str) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProtocolError(f"stream line {line!r:.200}: {key} is not an integer")
    return v


def parse_line(raw: bytes) -> Event | None:
    """One line's event; ``None`` for a blank line."""
    text = raw.decode("utf-8", "replace")
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ProtocolError(f"stream line {text.strip()!r:.200} is not JSON: {e}") from e
    if not isinstance(obj, dict):
        raise ProtocolError(f"stream line {text.strip()!r:.200} is not an object")
    if "pid" in obj:
        pid = _int(obj, "pid", text)
        if pid is None:
            raise ProtocolError(f"stream line {text!r:.200}: pid is null")
        return Started(pid)
    stream: Literal["stdout", "stderr"]
    for stream in ("stdout", "stderr"):
        if stream in obj:
            data = obj[stream]
            if not isinstance(data, str):
                raise ProtocolError(f"stream line {text!r:.200}: {stream} is not base64 text")
            try:
                return Output(stream, base64.b64decode(data, validate=True))
            except (binascii.Error, ValueError) as e:
                raise ProtocolError(f"stream line {text!r:.200}: {stream} is not base64: {e}") from e
    if "error" in obj:
        return Failed(str(obj["error"]), _int(obj, "duration_ms", text) or 0)
    if "exit_code" in obj:
        return Exited(
            _int(obj, "exit_code", text),
            _int(obj, "signal", text),
            bool(obj.get("timed_out", False)),
            _int(obj, "duration_ms", text) or 0,
        )
    raise ProtocolError(f"stream line {text.strip()!r:.200} is no event this SDK knows")


class Decoder:
    """Splits the bytes of a stream into events, whatever the boundaries
    of the pieces fed to it."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by ``data``."""
        self._buf += data
        events: list[Event] = []
        start = 0
        while True:
            nl = self._buf.find(b"\n", start)
            if nl < 0:
                break
            ev = parse_line(bytes(self._buf[start:nl]))
            if ev is not None:
                events.append(ev)
            start = nl + 1
        del self._buf[:start]
        if len(self._buf) > MAX_LINE:
            raise ProtocolError(f"a stream line over {MAX_LINE} bytes")
        return events

    def close(self) -> None:
        """The stream ended: an error if it ended inside a line."""
        if self._buf.strip():
            raise ProtocolError(
                f"the stream ended inside a line ({len(self._buf)} bytes without their newline)"
            )


TextSink = Callable[[str], object]


class Collector:
    """Adds up a stream's events into a :class:`RunResult`, passing output
    on to callbacks as text (decoded incrementally, so a UTF-8 character
    split between two pieces reaches the callback whole)."""

    def __init__(self, on_stdout: TextSink | None = None, on_stderr: TextSink | None = None) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.pid: int | None = None
        self.result: RunResult | None = None
        self._sinks = {"stdout": on_stdout, "stderr": on_stderr}
        self._decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")("replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")("replace"),
        }

    def add(self, event: Event) -> list[tuple[TextSink, str]]:
        """Records ``event``; the callback calls it asks for, to be made by
        the caller (sync or async). Raises ``ExecError`` for a failure."""
        calls: list[tuple[TextSink, str]] = []
        if isinstance(event, Started):
            self.pid = event.pid
        elif isinstance(event, Output):
            (self.stdout if event.stream == "stdout" else self.stderr).extend(event.data)
            sink = self._sinks[event.stream]
            if sink is not None:
                text = self._decoders[event.stream].decode(event.data)
                if text:
                    calls.append((sink, text))
        elif isinstance(event, Exited):
            for name, sink in self._sinks.items():
                rest = self._decoders[name].decode(b"", final=True)
                if sink is not None and rest:
                    calls.append((sink, rest))
            self.result = RunResult(
                event.exit_code,
                event.signal,
                event.timed_out,
                event.duration_ms,
                bytes(self.stdout),
                bytes(self.stderr),
            )
        else:
            raise ExecError(event.error, event.duration_ms)
        return calls

    def finish(self) -> RunResult:
        """The result, once the stream has ended."""
        if self.result is None:
            raise ProtocolError("the stream ended before the command's exit status")
        return self.result
