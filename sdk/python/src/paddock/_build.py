"""Request models made from the clients' keyword arguments, and the small
rules both clients share (so the sync and async clients cannot differ)."""

from __future__ import annotations

import base64
import dataclasses
import os
import posixpath
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import admin_models as a
from . import models as m
from .errors import ConfigError

Command = str | Sequence[str]
"""A command: a list of arguments run as they are, or a string run by
``/bin/sh -c``."""

EgressLike = m.Egress | Mapping[str, Sequence[str]] | None
SignalsLike = m.SignalRules | Mapping[str, m.SignalRule | Mapping[str, Any] | None] | None
SecretsLike = Mapping[str, m.SecretSpec | Mapping[str, Any]] | None


def argv_of(command: Command) -> list[str]:
    """``command`` as an argv: a string goes to ``/bin/sh -c``."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    argv = [str(a) for a in command]
    if not argv:
        raise ConfigError("an empty command")
    return argv


def egress_of(egress: EgressLike) -> m.Egress | None:
    """An :class:`~paddock.models.Egress` from one, or from a mapping with
    ``domains`` and ``cidrs``."""
    if egress is None or isinstance(egress, m.Egress):
        return egress
    unknown = set(egress) - {"domains", "cidrs"}
    if unknown:
        raise ConfigError(f"egress takes domains and cidrs, not {sorted(unknown)}")
    return m.Egress(list(egress.get("domains", ())), list(egress.get("cidrs", ())))


def signals_of(signals: SignalsLike) -> m.SignalRules | None:
    """:class:`~paddock.models.SignalRules` from one, or from a mapping of
    signal names to rules (each a ``SignalRule`` or a mapping of its
    fields)."""
    if signals is None or isinstance(signals, m.SignalRules):
        return signals
    known = {f.name for f in dataclasses.fields(m.SignalRules)}
    unknown = set(signals) - known
    if unknown:
        raise ConfigError(f"signals: {sorted(unknown)} are not among {sorted(known)}")
    rules = {k: v if v is None or isinstance(v, m.SignalRule) else m.SignalRule(**v) for k, v in signals.items()}
    return m.SignalRules(**rules)


def secret_spec(
    value: str,
    hosts: str | Sequence[str],
    header: str | None = None,
    format: str | None = None,
    replace_in: Sequence[m.SecretPlace] | None = None,
    allow_plain_http: bool = False,
    upstream_ca: str | None = None,
) -> m.SecretSpec:
    """A :class:`~paddock.models.SecretSpec`, checked for the mistakes that
    would otherwise only show as a 422: a value that is not text or is
    empty, and a bare host name (one host, not its letters)."""
    if not isinstance(value, str):
        raise ConfigError(f"a secret's value is text, not {type(value).__name__}")
    if not value:
        raise ConfigError("a secret's value is empty")
    host_list = [hosts] if isinstance(hosts, str) else [str(h) for h in hosts]
    places = None if replace_in is None else list(replace_in)
    return m.SecretSpec(value, host_list, header, format, places, bool(allow_plain_http), upstream_ca)


def secrets_of(secrets: SecretsLike) -> dict[str, m.SecretSpec] | None:
    """``secrets`` of a workspace spec from a mapping of names to
    :class:`~paddock.models.SecretSpec` or to mappings of its fields."""
    if secrets is None:
        return None
    known = {f.name for f in dataclasses.fields(m.SecretSpec)}
    out: dict[str, m.SecretSpec] = {}
    for name, spec in secrets.items():
        if isinstance(spec, m.SecretSpec):
            out[str(name)] = spec
            continue
        unknown = set(spec) - known
        if unknown:
            raise ConfigError(f"secret {name}: {sorted(unknown)} are not among {sorted(known)}")
        if "value" not in spec or "hosts" not in spec:
            raise ConfigError(f"secret {name}: value and hosts are required")
        out[str(name)] = secret_spec(**spec)
    return out


def str_map(value: Mapping[str, Any] | None) -> dict[str, str] | None:
    return None if value is None else {str(k): str(v) for k, v in value.items()}


def stdin_b64(stdin: bytes | str | None) -> str | None:
    if stdin is None:
        return None
    data = stdin.encode() if isinstance(stdin, str) else bytes(stdin)
    return base64.b64encode(data).decode("ascii")


def exec_request(
    command: Command,
    stdin: bytes | str | None,
    env: Mapping[str, str] | None,
    cwd: str | None,
    user: m.User | None,
    timeout_s: int | None,
) -> m.ExecRequest:
    return m.ExecRequest(argv_of(command), str_map(env), cwd, user, timeout_s, stdin_b64(stdin))


def pty_of(pty: m.PtySize | tuple[int, int] | None) -> m.PtySize | None:
    """A terminal size from a :class:`~paddock.models.PtySize` or ``(cols, rows)``."""
    if pty is None or isinstance(pty, m.PtySize):
        return pty
    cols, rows = pty
    return m.PtySize(int(cols), int(rows))


def process_request(
    command: Command,
    stdin: bool,
    env: Mapping[str, str] | None,
    cwd: str | None,
    user: m.User | None,
    tag: str | None,
    pty: m.PtySize | tuple[int, int] | None,
    timeout_s: int | None,
) -> m.ProcessRequest:
    return m.ProcessRequest(argv_of(command), str_map(env), cwd, user, tag, pty_of(pty), stdin or None, timeout_s)


def run_stream_timeout(timeout_s: int | None, stream_timeout: float | None) -> float | None:
    """How long a run's stream may be silent: as given; else, with a
    command timeout, that plus a minute (the appliance ends the command
    then); else as long as it takes."""
    if stream_timeout is not None:
        return stream_timeout
    return float(timeout_s) + 60.0 if timeout_s else None


def workspace_spec(ttl_s: int, **options: Any) -> m.WorkspaceSpec:
    options["egress"] = egress_of(options.get("egress"))
    options["signals"] = signals_of(options.get("signals"))
    options["env"] = str_map(options.get("env"))
    options["labels"] = str_map(options.get("labels"))
    options["secrets"] = secrets_of(options.get("secrets"))
    return m.WorkspaceSpec(ttl_s=ttl_s, **options)


def token_request(name: str, scopes: Sequence[a.Scope], **options: Any) -> a.TokenRequest:
    quotas = options.get("quotas")
    if isinstance(quotas, Mapping):
        options["quotas"] = a.Quotas(**quotas)
    actions = options.get("actions")
    if isinstance(actions, Mapping):
        options["actions"] = a.ActionPolicy(**actions)
    options["egress_allow"] = egress_of(options.get("egress_allow"))
    options["labels"] = str_map(options.get("labels"))
    ids = options.get("workspace_ids")
    if ids is not None:
        options["workspace_ids"] = [getattr(w, "id", w) for w in ids]
    return a.TokenRequest(name=name, scopes=list(scopes), **options)


def remote_path(path: str) -> str:
    """A workspace path: absolute, as the API requires."""
    if not path.startswith("/"):
        raise ConfigError(f"{path!r}: a workspace path must be absolute")
    return path


def mode_of(mode: int | str | None) -> str | None:
    """Permission bits as the API's octal text: ``0o644`` or ``"644"``."""
    if mode is None:
        return None
    text = format(mode, "o") if isinstance(mode, int) else str(mode)
    if not (1 <= len(text) <= 4 and all(c in "01234567" for c in text)):
        raise ConfigError(f"mode {mode!r}: octal permission bits such as 0o644 or '644'")
    return text


def labels_query(labels: Mapping[str, str] | None) -> list[tuple[str, str | int | bool | None]]:
    return [("label", f"{k}={v}") for k, v in (labels or {}).items()]


def id_of(x: Any) -> str:
    """A workspace's id from a workspace handle or the id itself."""
    return str(getattr(x, "id", x))


@dataclass(frozen=True)
class UploadStep:
    """One step of uploading a local tree: a directory to make or a file."""

    local: str
    remote: str
    mode: str
    is_dir: bool


def upload_plan(local_dir: str | os.PathLike[str], remote_dir: str) -> list[UploadStep]:
    """Directories (parents first) and regular files under ``local_dir``,
    with their modes; symbolic links and special files are skipped."""
    root = os.fspath(local_dir)
    if not os.path.isdir(root):
        raise ConfigError(f"{root}: not a directory")
    remote_dir = remote_path(remote_dir).rstrip("/") or "/"
    steps = [UploadStep(root, remote_dir, mode_of(stat.S_IMODE(os.stat(root).st_mode) & 0o777) or "755", True)]
    for here, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(here, root)
        base = remote_dir if rel == "." else posixpath.join(remote_dir, *rel.split(os.sep))
        for name in list(dirs):
            local = os.path.join(here, name)
            if os.path.islink(local):
                dirs.remove(name)
                continue
            perm = stat.S_IMODE(os.stat(local).st_mode) & 0o777
            steps.append(UploadStep(local, posixpath.join(base, name), mode_of(perm) or "755", True))
        for name in sorted(files):
            local = os.path.join(here, name)
            st = os.lstat(local)
            if stat.S_ISREG(st.st_mode):
                perm = stat.S_IMODE(st.st_mode) & 0o777
                steps.append(UploadStep(local, posixpath.join(base, name), mode_of(perm) or "644", False))
    return steps


def local_child(local_dir: str, name: str) -> str:
    """``local_dir/name`` for a name a workspace listed, refusing names
    that would leave ``local_dir``."""
    if name in ("", ".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ConfigError(f"refusing the directory entry name {name!r}")
    return os.path.join(local_dir, name)
