"""The SDK checked against docs/openapi.yaml, so the two cannot drift apart.

* Every route in ``paddock._routes.ROUTES`` (which every request goes
  through) is an operation of the document, with the same method, path,
  query parameters, body content type and answer content type; and every
  operation of the document is a route (a new endpoint fails this test
  until the SDK has it).
* Every dataclass the SDK reads or writes matches its schema, field for
  field, both ways: each field's JSON key is a property of the schema, each
  property (and so each required one) is a field, the types agree (arrays,
  objects, nullability, enums as ``Literal``s).
* Every property of every request body and every query parameter is
  settable through the public methods, sync and async: each is called with
  all its options and the request it would send (captured before any
  network) must carry them all.

Needs PyYAML (a test dependency only). ``PADDOCK_OPENAPI`` may name the
document; by default it is the repository's ``docs/openapi.yaml``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import typing
import unittest
from collections.abc import Callable
from typing import Any

import yaml

import paddock
from paddock import _build, _wire
from paddock._http import AsyncTransport, Prepared, SyncTransport
from paddock._routes import ROUTES
from paddock.admin_models import EVENT_FILTER_FIELDS
from paddock.review_models import Approval
from paddock.aio_process import AsyncProcess
from paddock.process import Process

DOC_PATH = os.environ.get("PADDOCK_OPENAPI") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs", "openapi.yaml"
)


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where ``on``/``off``/``yes``/``no`` are
    booleans; OpenAPI 3.1 documents are YAML 1.2, where only true and false
    are (a property named ``off`` must stay a name)."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

with open(DOC_PATH) as f:
    DOC: dict[str, Any] = yaml.load(f, Loader=Yaml12Loader)  # a SafeLoader

SIGNALS = [f.name for f in dataclasses.fields(paddock.SignalRules)]
CONTENT = {"json": "application/json", "none": "application/json", "ndjson": "application/x-ndjson",
           "bytes": "application/octet-stream", "text": "text/plain"}


def resolve(node: Any) -> Any:
    """``node`` with its ``$ref`` chain followed."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = DOC
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def nonnull(schema: Any) -> tuple[Any, bool]:
    """The schema without its null alternative, and whether null is allowed
    (``allOf`` of one schema is that schema)."""
    s = resolve(schema)
    if "allOf" in s:
        assert len(s["allOf"]) == 1, f"allOf of several schemas: {s}"
        return nonnull(s["allOf"][0])
    for key in ("oneOf", "anyOf"):
        if key in s:
            variants = [resolve(v) for v in s[key]]
            nullable = any(v.get("type") == "null" for v in variants)
            rest = [v for v in variants if v.get("type") != "null"]
            assert len(rest) == 1, f"{key} with several non-null variants: {s}"
            inner, more = nonnull(rest[0])
            return inner, nullable or more
    types = s.get("type")
    if isinstance(types, list):
        nullable = "null" in types
        others = [t for t in types if t != "null"]
        return {**s, "type": others[0] if len(others) == 1 else others}, nullable
    return s, False


def operation(method: str, path: str) -> dict[str, Any]:
    op = DOC["paths"].get(path, {}).get(method.lower())
    if op is None:
        raise AssertionError(f"the document has no {method} {path}")
    return typing.cast(dict[str, Any], op)


def parameters(method: str, path: str, where: str) -> dict[str, dict[str, Any]]:
    params = [resolve(p) for p in DOC["paths"][path].get("parameters", [])]
    params += [resolve(p) for p in operation(method, path).get("parameters", [])]
    return {p["name"]: p for p in params if p["in"] == where}


def success(method: str, path: str) -> dict[str, Any]:
    """The operation's success answer; several (200 rotated, 201 added)
    must carry the same content, since the SDK reads them alike. A 202
    (an ask a token's policy made of it) is read apart: see asked()."""
    responses = operation(method, path)["responses"]
    codes = sorted(str(c) for c in responses if str(c).startswith("2") and str(c) != "202")
    assert codes, f"{method} {path}: no success answer"
    answers = [resolve(responses[c] if c in responses else responses[int(c)]) for c in codes]
    contents = [a.get("content") for a in answers]
    assert all(c == contents[0] for c in contents), f"{method} {path}: success answers {codes} differ"
    return typing.cast(dict[str, Any], answers[0])


class Shapes:
    """Checks a Python type against a schema; collects every problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    def model(self, cls: type, schema: Any, where: str) -> None:
        s, _ = nonnull(schema)
        if s.get("type") != "object":
            self.fail(where, f"{cls.__name__} is a dataclass but the schema is {s.get('type')}")
            return
        props = s.get("properties", {})
        fields = {_wire.wire_name(f): f for f in _wire.wire_fields(cls)}
        hints = _wire.hints(cls)
        for key, f in fields.items():
            if key not in props:
                self.fail(where, f"{cls.__name__}.{f.name} is {key!r}, which the schema does not have (it has {sorted(map(str, props))})")
            else:
                self.type(hints[f.name], props[key], f"{where}.{key}")
        for key in props:
            if key not in fields:
                self.fail(where, f"the schema's {key!r} is not a field of {cls.__name__}")
        required = s.get("required", [])
        for key in required:
            if key not in fields:
                self.fail(where, f"required {key!r} is not a field of {cls.__name__}")
        for key, f in fields.items():
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if not has_default and key not in required:
                self.fail(where, f"{cls.__name__}.{f.name} must be given, but the schema does not require {key!r}")

    def type(self, tp: Any, schema: Any, where: str) -> None:
        inner, optional = _wire.strip_optional(tp)
        s, nullable = nonnull(schema)
        if nullable and not optional and inner is not Any:
            self.fail(where, f"the schema allows null but the field is {tp} (a null would not read)")
        tp = inner
        if tp is Any:
            return
        kind = s.get("type")
        origin = typing.get_origin(tp)
        if origin is typing.Literal:
            want = {v for v in s.get("enum", []) if v is not None}
            if set(typing.get_args(tp)) != want or kind != "string":
                self.fail(where, f"{tp} is not the schema's enum {sorted(want)}")
        elif origin is list:
            if kind != "array":
                self.fail(where, f"a list where the schema has {kind}")
            else:
                self.type(typing.get_args(tp)[0], s.get("items", {}), f"{where}[]")
        elif origin is dict:
            extra = s.get("additionalProperties")
            if kind != "object" or not isinstance(extra, dict):
                self.fail(where, f"a dict where the schema has {kind} without additionalProperties")
            else:
                self.type(typing.get_args(tp)[1], extra, f"{where}{{}}")
        elif dataclasses.is_dataclass(tp):
            self.model(tp, s, where)  # type: ignore[arg-type]
        else:
            want = {int: {"integer"}, float: {"number", "integer"}, str: {"string"}, bool: {"boolean"}}[tp]
            if kind not in want:
                self.fail(where, f"{tp.__name__} where the schema has {kind}")


class Routes(unittest.TestCase):
    def test_every_route_is_a_documented_operation(self) -> None:
        for name, r in ROUTES.items():
            with self.subTest(name):
                self.assertIn(r.path, DOC["paths"], f"{name}: no path {r.path} in the document")
                self.assertIn(r.method.lower(), DOC["paths"][r.path], f"{name}: {r.path} has no {r.method}")
                holes = set(re.findall(r"{(\w+)}", r.path))
                self.assertEqual(holes, set(parameters(r.method, r.path, "path")), name)

    def test_every_documented_operation_is_a_route(self) -> None:
        ours = {(r.method.lower(), r.path) for r in ROUTES.values()}
        for path, item in DOC["paths"].items():
            for method in item:
                # The web console's session calls are for browsers, not programs.
                if method in ("get", "put", "post", "delete", "patch") and not item[method].get("x-browser-only"):
                    self.assertTrue((method, path) in ours, f"the SDK has no call for {method.upper()} {path}")

    def test_query_parameters(self) -> None:
        for name, r in ROUTES.items():
            with self.subTest(name):
                doc = parameters(r.method, r.path, "query")
                self.assertLessEqual(set(r.query), set(doc), f"{name} sends query parameters the document lacks")
                required = {k for k, p in doc.items() if p.get("required")}
                self.assertLessEqual(required, set(r.query), f"{name} cannot send required {required}")
                self.assertEqual(set(doc), set(r.query), f"{name}: the document has query parameters the SDK lacks")

    def test_request_bodies_and_answers(self) -> None:
        shapes = Shapes()
        for name, r in ROUTES.items():
            op = operation(r.method, r.path)
            body = resolve(op.get("requestBody", {}))
            content = body.get("content", {})
            if r.body is not None:
                self.assertIn("application/json", content, name)
                shapes.model(r.body, content["application/json"]["schema"], f"{name} request")
            elif r.raw_body:
                self.assertIn("application/octet-stream", content, name)
            else:
                self.assertFalse(body.get("required"), f"{name}: the document requires a body the SDK does not send")
            answer = success(r.method, r.path).get("content", {})
            self.assertIn(CONTENT[r.answer], answer, f"{name}: the answer is {sorted(answer)}")
            if r.answer == "json":
                self.assertIsNotNone(r.model, name)
                shapes.model(r.model, answer["application/json"]["schema"], f"{name} answer")  # type: ignore[arg-type]
            # A 202 is documented exactly where the SDK raises ApprovalPending.
            asked = operation(r.method, r.path)["responses"].get("202") or operation(r.method, r.path)["responses"].get(202)
            self.assertEqual(asked is not None, r.asks, f"{name}: a documented 202 and Route.asks differ")
            if asked is not None:
                schema = resolve(asked)["content"]["application/json"]["schema"]
                shapes.model(Approval, schema, f"{name} 202")
        if shapes.problems:
            self.fail("the SDK's models and the document differ:\n" + "\n".join(shapes.problems))

    def test_stream_keys_are_documented(self) -> None:
        keys = {"stdout", "stderr", "exit_code", "signal", "timed_out", "duration_ms", "error"}
        for name, extra in (("exec", set()), ("start_process", {"pid"}), ("watch_process", {"pid"})):
            r = ROUTES[name]
            text = success(r.method, r.path)["description"]
            for key in keys | extra:
                self.assertIn(f'"{key}"' if key in ("pid", "error") else key, text, f"{name}: {key}")

    def test_event_fields_are_the_audit_filters(self) -> None:
        r = ROUTES["audit"]
        self.assertLessEqual(set(EVENT_FILTER_FIELDS), set(parameters(r.method, r.path, "query")))


# -- every option settable ---------------------------------------------------


class Captured(Exception):
    def __init__(self, p: Prepared) -> None:
        self.p = p


def _capture_sync(self: SyncTransport, p: Prepared, timeout: Any) -> Any:
    raise Captured(p)


async def _capture_async(self: AsyncTransport, p: Prepared, timeout: Any) -> Any:
    raise Captured(p)


# What to call, with every option, for each route that takes a body or a
# query: (route, callable taking (client, workspace, process)).
Call = Callable[[Any, Any, Any], Any]
CALLS: list[tuple[str, Call]] = [
    ("create_workspace", lambda c, w, p: c.create_workspace(
        ttl_s=60, template="default", vcpus=1, memory_mib=256, disk_mib=512, disk_mib_per_s=10, disk_iops=100,
        egress={"domains": ["pypi.org"], "cidrs": ["203.0.113.0/24:80"]}, net_mib_per_s=5, net_connections_per_s=6,
        signals={k: {"threshold": 9, "window_s": 60, "action": "stop", "off": False} for k in SIGNALS},
        env={"A": "1"}, labels={"a": "b"},
        secrets={"K": {"value": "v", "hosts": ["a.example"], "header": "Authorization", "format": "Bearer {}",
                       "replace_in": ["headers"], "allow_plain_http": True, "upstream_ca": "PEM"}})),
    ("list_workspaces", lambda c, w, p: c.list_workspaces(labels={"a": "b"})),
    ("set_ttl", lambda c, w, p: w.set_ttl(60, reason="why")),
    ("pause_workspace", lambda c, w, p: w.pause(ttl_s=3600)),
    ("set_limits", lambda c, w, p: w.set_limits(disk_mib_per_s=1, disk_iops=2, net_mib_per_s=3, net_connections_per_s=4)),
    ("publish_port", lambda c, w, p: w.publish_port(8080, host_port=20000, reason="why")),
    ("set_secret", lambda c, w, p: w.set_secret(
        "K", "v", hosts=["a.example"], header="Authorization", format="Bearer {}", replace_in=["headers", "body"],
        allow_plain_http=True, upstream_ca="PEM")),
    ("set_egress", lambda c, w, p: w.set_egress(domains=["a.example"], cidrs=["198.51.100.7:443"])),
    ("metrics", lambda c, w, p: w.metrics(since=5)),
    ("system_update", lambda c, w, p: c.update_system(__file__, at="now", force=True)),
    ("system_restore", lambda c, w, p: c.restore(__file__, recovery_secret="s3cret")),
    ("host_metrics", lambda c, w, p: c.host_metrics(since=5)),
    ("network_log", lambda c, w, p: w.network_log(since=5, decision="denied", limit=10)),
    ("exec", lambda c, w, p: w.run(["true"], stdin=b"x", env={"A": "1"}, cwd="/", user="root", timeout_s=5)),
    ("start_process", lambda c, w, p: w.spawn(["sh"], stdin=True, env={"A": "1"}, cwd="/", user="root", tag="t",
                                               pty=(80, 24), timeout_s=5)),
    ("signal_process", lambda c, w, p: p.signal(15)),
    ("resize_process", lambda c, w, p: p.resize(80, 24)),
    ("process_input", lambda c, w, p: p.send_input(b"x")),
    ("upload_file", lambda c, w, p: w.write_file("/f", b"x", mode=0o600, user="root")),
    ("download_file", lambda c, w, p: w.read_file("/f", user="root")),
    ("remove_file", lambda c, w, p: w.remove("/f", recursive=True, user="root")),
    ("list_dir", lambda c, w, p: w.list_dir("/", user="root")),
    ("make_dir", lambda c, w, p: w.make_dir("/d", mode=0o700, user="root")),
    ("create_link", lambda c, w, p: c.create_link("ws_1", "ws_2", 80, reason="why")),
    ("create_token", lambda c, w, p: c.create_token(
        "n", ["exec", "read"], ttl_s=60,
        quotas={"max_workspaces": 1, "max_vcpus": 2, "max_memory_mib": 3, "max_disk_mib": 4, "max_ttl_s": 5},
        labels={"a": "b"}, workspace_ids=["ws_1"], egress_allow={"domains": ["a.example"], "cidrs": []}, secret_format="e2b",
        actions={"extend_ttl": "ask", "publish_port": "allow", "link": "deny"})),
    ("recover_keys", lambda c, w, p: c.recover_keys("secret")),
    ("list_approvals", lambda c, w, p: c.approvals(state="pending")),
    ("decide_approval", lambda c, w, p: c.decide("apr_1", True, ttl_s=60, reason="fine")),
    ("audit", lambda c, w, p: c.events(event="exec_started", workspace="ws_1", token="tok_1", limit=5)),
]


def every_key(value: Any, schema: Any, where: str, missing: list[str]) -> None:
    """Records in ``missing`` each property of ``schema`` absent from
    ``value`` (recursing into nested objects)."""
    s, _ = nonnull(schema)
    for key, sub in s.get("properties", {}).items():
        if key not in value:
            missing.append(f"{where}.{key}")
        elif isinstance(value[key], dict) and nonnull(sub)[0].get("properties"):
            every_key(value[key], sub, f"{where}.{key}", missing)


class Settable(unittest.TestCase):
    def setUp(self) -> None:
        self.sync = paddock.Paddock("https://box", "pdk_x")
        self.aio = paddock.AsyncPaddock("https://box", "pdk_x")
        orig_sync, orig_async = SyncTransport._send, AsyncTransport._send
        SyncTransport._send = _capture_sync  # type: ignore[method-assign]
        AsyncTransport._send = _capture_async  # type: ignore[method-assign]

        def restore() -> None:
            SyncTransport._send = orig_sync  # type: ignore[method-assign]
            AsyncTransport._send = orig_async  # type: ignore[method-assign]

        self.addCleanup(restore)

    def handles(self) -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]:
        ws, aws = self.sync.workspace("ws_1"), self.aio.workspace("ws_1")
        proc = Process.__new__(Process)
        proc.workspace, proc.pid = ws, 7
        aproc = AsyncProcess.__new__(AsyncProcess)
        aproc.workspace, aproc.pid = aws, 7
        return (self.sync, ws, proc), (self.aio, aws, aproc)

    def capture(self, call: Call, handles: tuple[Any, Any, Any]) -> Prepared:
        try:
            result = call(*handles)
            if asyncio.iscoroutine(result) or hasattr(result, "__await__"):
                asyncio.run(_await(result))
        except Captured as c:
            return c.p
        self.fail("nothing was sent")

    def test_every_option_reaches_the_request(self) -> None:
        covered = {name for name, _ in CALLS}
        for name, r in ROUTES.items():
            if r.body is not None or r.query or r.raw_body:
                self.assertIn(name, covered, f"{name} takes a body or query but no test call sets them all")
        sync_h, async_h = self.handles()
        for name, call in CALLS:
            r = ROUTES[name]
            sent = [self.capture(call, sync_h), self.capture(call, async_h)]
            with self.subTest(name):
                self.assertEqual([p.route for p in sent], [r, r], f"{name}: the method sent another route")
                a, b = sent
                # A streamed body (a file sent in chunks) is a generator on
                # one side and an async one on the other: both are a stream.
                def body(c: Any) -> Any:
                    return c if isinstance(c, (bytes, str, type(None))) else "a stream"

                self.assertEqual((a.path, a.query, body(a.content)), (b.path, b.query, body(b.content)), f"{name}: sync and async differ")
                doc_query = parameters(r.method, r.path, "query")
                self.assertEqual({k for k, _ in a.query}, set(doc_query), f"{name}: query parameters not all set")
                if r.body is not None:
                    body = json.loads(a.content)  # type: ignore[arg-type]
                    schema = resolve(operation(r.method, r.path)["requestBody"])["content"]["application/json"]["schema"]
                    missing: list[str] = []
                    every_key(body, schema, name, missing)
                    self.assertEqual(missing, [], f"{name}: not settable through the SDK")


class RestoreSecret(Settable):
    def test_the_recovery_secret_travels_as_the_documented_header_only_when_given(self) -> None:
        header = [p for p in operation("POST", "/v1/system/restore").get("parameters", []) if p["in"] == "header"]
        self.assertEqual([p["name"] for p in header], ["X-Paddock-Recovery-Secret"])
        for h in self.handles():
            with_secret = self.capture(lambda c, w, p: c.restore(__file__, recovery_secret="s3cret"), h)
            self.assertEqual(with_secret.headers.get("X-Paddock-Recovery-Secret"), "s3cret")
            self.assertNotIn("s3cret", with_secret.path + repr(with_secret.query))
            without = self.capture(lambda c, w, p: c.restore(__file__), h)
            self.assertNotIn("X-Paddock-Recovery-Secret", without.headers)


async def _await(x: Any) -> Any:
    return await x


class Helpers(unittest.TestCase):
    def test_shape_checker_catches_drift(self) -> None:
        @dataclasses.dataclass
        class Wrong:
            ttl_s: str
            bogus: int

        shapes = Shapes()
        shapes.model(Wrong, {"$ref": "#/components/schemas/TtlRequest"}, "x")
        self.assertEqual(len(shapes.problems), 4, shapes.problems)  # ttl_s type; bogus unknown, not required; reason missing

    def test_argv(self) -> None:
        self.assertEqual(_build.argv_of("echo hi"), ["/bin/sh", "-c", "echo hi"])
        with self.assertRaises(paddock.ConfigError):
            _build.argv_of([])


if __name__ == "__main__":
    unittest.main()
