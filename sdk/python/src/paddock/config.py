"""Where a client's settings come from besides its arguments: the
environment, or the CLI's saved session (``paddock login``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """What a client needs: the appliance's URL, a token, and the SHA-256
    fingerprint of its certificate (``None``: verify with the system's
    trust store, or ``ca_file``)."""

    url: str
    token: str = field(repr=False)
    fingerprint: str | None = None
    ca_file: str | None = None


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """``PADDOCK_URL``, ``PADDOCK_TOKEN`` (both required) and
    ``PADDOCK_FINGERPRINT`` (optional) from the environment."""
    env = os.environ if environ is None else environ
    url, token = env.get("PADDOCK_URL", ""), env.get("PADDOCK_TOKEN", "")
    missing = [k for k, v in (("PADDOCK_URL", url), ("PADDOCK_TOKEN", token)) if not v]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not set")
    return Settings(url, token, env.get("PADDOCK_FINGERPRINT") or None)


def cli_config_path() -> Path:
    """The CLI's session file: ``$PADDOCK_CONFIG``, else
    ``~/.config/paddock/config.json``."""
    override = os.environ.get("PADDOCK_CONFIG")
    if override:
        return Path(override)
    return Path(os.environ.get("HOME", ".")) / ".config" / "paddock" / "config.json"


def from_cli_config(path: str | os.PathLike[str] | None = None) -> Settings:
    """The session ``paddock login`` saved: ``{"url", "token",
    "fingerprint"}`` in :func:`cli_config_path` (or ``path``)."""
    p = Path(path) if path is not None else cli_config_path()
    try:
        value = json.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: {e} (run `paddock login` first)") from e
    except ValueError as e:
        raise ConfigError(f"{p}: not JSON: {e}") from e
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in ("url", "token", "fingerprint")):
        raise ConfigError(f"{p}: expected url, token and fingerprint")
    return Settings(value["url"], value["token"], value["fingerprint"])
