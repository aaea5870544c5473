"""The serving certificate: loaded at start, and again at the first handshake after a change.

cert-manager (or `shutdown-coordinator certs` run again) rewrites the Secret; the kubelet swaps
the mounted files atomically. Every TLS handshake first compares the two files' stat stamps
(device, inode, mtime, size: two `stat` calls, no read) with the loaded pair's, and only on a
change reads them into a new context. So no timer runs, a rotation is seen by the very next
connection, and a pair that does not load (a half-written copy, a key that does not match) is
logged once and the previous certificate keeps serving. Connections already open keep theirs.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import structlog
from cryptography import x509

if TYPE_CHECKING:
    from pathlib import Path

log = structlog.get_logger(__name__)

Stamp = tuple[tuple[int, int, int, int], ...]


class CertificateError(Exception):
    """The certificate or key cannot be read or do not form a pair."""


class ServingCertificate:
    """A server SSLContext whose certificate follows the files at `cert_path` and `key_path`."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self._paths = (cert_path, key_path)
        self._stamp = self._stat()
        self._current = self._load()
        self._refused: Stamp | None = None
        #: Handed to the server: it holds the certificate loaded at start and the callback that
        #: moves each new connection to the current one.
        self.context = self._load()
        self.context.sni_callback = self._on_hello
        self.reloads = 0

    @property
    def current(self) -> ssl.SSLContext:
        """The context new connections get."""
        return self._current

    def refresh(self) -> None:
        """Load the files again if their stamps changed; keep the loaded pair if they fail."""
        error: CertificateError | None = None
        try:
            stamp = self._stat()
        except CertificateError as e:
            stamp, error = (), e  # missing files: one stamp of their own, so logged once
        if stamp in (self._stamp, self._refused):
            return
        if error is None:
            try:
                context = self._load()
            except CertificateError as e:
                error = e
        if error is not None:
            log.warning("certificate_reload_refused", error=str(error), serving="the loaded one")
            self._refused = stamp
            return
        self._stamp, self._current, self._refused = stamp, context, None
        self.reloads += 1
        log.info("certificate_reloaded", cert=str(self._paths[0]), not_after=self.not_after())

    def not_after(self) -> str:
        """When the loaded certificate expires (ISO 8601), for the log."""
        try:
            pem = self._paths[0].read_bytes()
            return x509.load_pem_x509_certificate(pem).not_valid_after_utc.isoformat()
        except (OSError, ValueError):
            return "unknown"

    def _on_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _: ssl.SSLContext
    ) -> None:
        # Called for every ClientHello, with or without SNI; an exception here would fail the
        # handshake, so none may escape.
        try:
            self.refresh()
            if connection.context is not self._current:
                connection.context = self._current
        except Exception:
            log.exception("certificate_refresh_failed")

    def _stat(self) -> Stamp:
        try:
            stats = [path.stat() for path in self._paths]
        except OSError as e:
            raise CertificateError(f"cannot read {e.filename}: {e.strerror}") from None
        return tuple((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def _load(self) -> ssl.SSLContext:
        cert, key = self._paths
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
        except OSError as e:  # ssl.SSLError is an OSError
            detail = e.strerror or str(e)
            raise CertificateError(
                f"cannot load the certificate {str(cert)!r} with the key {str(key)!r}: {detail}"
            ) from None
        return context
