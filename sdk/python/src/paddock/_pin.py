"""Certificate pinning by SHA-256 fingerprint, as the CLI does it.

The appliance makes its own self-signed certificate on first boot and its
console shows the certificate's SHA-256 fingerprint. With a fingerprint,
the SDK

1. makes one unauthenticated TLS handshake (no verification, nothing sent)
   to fetch the certificate the appliance presents;
2. compares the SHA-256 of its DER bytes with the pin, and refuses with
   :class:`~paddock.errors.PinMismatch` if they differ, before any request
   (and so before the token) is sent;
3. builds an :class:`ssl.SSLContext` whose only trust anchor is that very
   certificate (host name not checked: the pin replaces it), which every
   later connection is verified against during its handshake. A
   certificate that changes later (``POST /v1/tls/rotate``, or someone in
   the path) fails that handshake, again before the request is written,
   and is reported as ``PinMismatch`` too.

Without a fingerprint the system's trust store (or ``ca_file``) verifies
the certificate and its host name, as for any HTTPS server.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import threading
from typing import Any

from .errors import ConfigError, ConnectionFailed, PinMismatch

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME: a pinned certificate is trusted for
# being that certificate, whatever its dates say (the CLI ignores them too).
_NO_CHECK_TIME = 0x200000


def normalize_fingerprint(fingerprint: str) -> str:
    """The canonical form ``AA:BB:...`` (32 upper-case pairs) of a SHA-256
    fingerprint given as ``aa:bb:...``, plain hex, or with a ``sha256:`` /
    ``SHA256 Fingerprint=`` prefix as ``openssl x509 -fingerprint`` prints.

    Raises :class:`~paddock.errors.ConfigError` when it is not 32 bytes of hex.
    """
    text = fingerprint.strip()
    text = re.sub(r"^sha-?256(\s*fingerprint)?\s*[:=]\s*", "", text, flags=re.IGNORECASE)
    digits = re.sub(r"[\s:]", "", text).upper()
    if len(digits) != 64 or not re.fullmatch(r"[0-9A-F]{64}", digits):
        raise ConfigError(f"{fingerprint!r} is not a SHA-256 fingerprint (64 hex digits, colons optional)")
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def fingerprint_of(der: bytes) -> str:
    """The ``AA:BB:...`` SHA-256 fingerprint of a DER certificate."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def fetch_certificate(host: str, port: int, timeout: float) -> bytes:
    """The DER certificate ``host:port`` presents, from one TLS handshake
    that verifies nothing and sends nothing after it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except TimeoutError as e:
        raise ConnectionFailed(f"connecting to {host}:{port}: timed out after {timeout} s") from e
    except (OSError, ssl.SSLError) as e:
        raise ConnectionFailed(f"connecting to {host}:{port}: {e}") from e
    if not der:
        raise ConnectionFailed(f"{host}:{port} presented no certificate")
    return der


def pinned_context(der: bytes) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate ``der``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(der))
    # The pinned certificate is the anchor even when it is not self-signed.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        ctx.verify_flags |= _NO_CHECK_TIME
    except (ValueError, OverflowError):  # pragma: no cover - old OpenSSL
        pass
    return ctx


def default_context(ca_file: str | None) -> ssl.SSLContext:
    """A context verifying against ``ca_file``, or the system's store."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"ca_file {ca_file}: {e}") from e


class Tls:
    """The TLS identity one client (and the clients made from it by
    ``with_token``) trusts; the pinned certificate is fetched once, on
    first use, under a lock."""

    def __init__(self, host: str, port: int, fingerprint: str | None, ca_file: str | None) -> None:
        self.host = host
        self.port = port
        self.fingerprint = normalize_fingerprint(fingerprint) if fingerprint else None
        self.ca_file = ca_file
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def context(self, timeout: float) -> ssl.SSLContext:
        """The verifying context; with a pin, the first call fetches the
        certificate and raises ``PinMismatch`` if it is not the pinned one."""
        with self._lock:
            if self._context is None:
                if self.fingerprint is None:
                    self._context = default_context(self.ca_file)
                else:
                    der = fetch_certificate(self.host, self.port, timeout)
                    seen = fingerprint_of(der)
                    if seen != self.fingerprint:
                        raise PinMismatch(self.fingerprint, seen)
                    self._context = pinned_context(der)
            return self._context

    def check_peer(self, ssl_object: Any) -> None:
        """Raises ``PinMismatch`` when a connection's peer (an SSL object
        from the transport) presented another certificate; a second guard
        behind the handshake's own verification."""
        if self.fingerprint is None or ssl_object is None:
            return
        try:
            der = ssl_object.getpeercert(True)
        except (AttributeError, ValueError, ssl.SSLError):
            return
        if der and fingerprint_of(der) != self.fingerprint:
            raise PinMismatch(self.fingerprint, fingerprint_of(der))


def is_verification_failure(exc: BaseException) -> bool:
    """Whether a transport error was (caused by) a failed certificate
    verification."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            return True
        if isinstance(e, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(e):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False
