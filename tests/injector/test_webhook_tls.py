"""The serving certificate follows its files: a rotation is seen by the next TLS connection."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from structlog.testing import capture_logs

from sidecar.injector.certs import Issued, _write, dns_names, issue
from sidecar.injector.server import Webhook
from sidecar.injector.tls import CertificateError, ServingCertificate
from tests.injector.conftest import (
    PLAIN_POD,
    SERVICE_HOST,
    Served,
    client_context,
    review,
    stand_in_plan,
)


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


async def _peer_certificate(port: int, ca_file: Path) -> bytes:
    """The certificate a new TLS connection is served, verified against `ca_file`."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(ca_file), server_hostname=SERVICE_HOST
    )
    try:
        der: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return der


def _fresh() -> Issued:
    return issue(dns_names("shutdown-coordinator-injector", "shutdown-coordinator-system"))


def _rotate_by_rename(folder: Path, issued: Issued) -> None:
    """As `certs --force` does: each file replaced by a rename."""
    _write(folder / "tls.crt", issued.cert_pem, private=False)
    _write(folder / "tls.key", issued.key_pem, private=True)


async def test_a_new_connection_sees_the_rotated_certificate(
    served: Served, tmp_path: Path
) -> None:
    first = served.cert_file.read_bytes()
    assert await _peer_certificate(served.webhook.port, served.ca_file) == _der(first)
    rotated = _fresh()
    _rotate_by_rename(served.cert_file.parent, rotated)
    new_ca = tmp_path / "new-ca.crt"
    new_ca.write_bytes(rotated.ca_pem)
    with capture_logs() as logs:
        assert await _peer_certificate(served.webhook.port, new_ca) == _der(rotated.cert_pem)
    assert [e["event"] for e in logs] == ["certificate_reloaded"]
    # Reviews go on over the new certificate, and the old CA no longer verifies it.
    served.client_ssl = client_context(new_ca)
    status, body = await served.post(json.dumps(review(PLAIN_POD)).encode())
    assert status == 200
    assert "patch" in body["response"]
    with pytest.raises(ssl.SSLCertVerificationError):
        await _peer_certificate(served.webhook.port, served.ca_file)
    assert served.webhook.certificate.reloads == 1


def _kubelet_layout(folder: Path, issued: Issued, generation: str) -> None:
    """A Secret volume: files are symlinks through `..data`, swapped atomically on update."""
    data = folder / generation
    data.mkdir()
    (data / "tls.crt").write_bytes(issued.cert_pem)
    (data / "tls.key").write_bytes(issued.key_pem)
    link = folder / "..data_tmp"
    link.symlink_to(generation)
    link.replace(folder / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")


async def test_a_secret_volume_update_is_seen_through_its_symlinks(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    first, second = _fresh(), _fresh()
    _kubelet_layout(volume, first, "..2026_12_01_a")
    webhook = Webhook(
        stand_in_plan,
        ServingCertificate(volume / "tls.crt", volume / "tls.key"),
        host="127.0.0.1",
        port=0,
    )
    await webhook.start()
    try:
        (tmp_path / "ca1").write_bytes(first.ca_pem)
        (tmp_path / "ca2").write_bytes(second.ca_pem)
        assert await _peer_certificate(webhook.port, tmp_path / "ca1") == _der(first.cert_pem)
        _kubelet_layout(volume, second, "..2026_12_01_b")
        assert await _peer_certificate(webhook.port, tmp_path / "ca2") == _der(second.cert_pem)
    finally:
        await webhook.stop()


async def test_a_pair_that_does_not_load_keeps_the_old_one_serving(served: Served) -> None:
    first = served.cert_file.read_bytes()
    rotated = _fresh()
    folder = served.cert_file.parent
    # Half a rotation: the new certificate beside the old key.
    _write(folder / "tls.crt", rotated.cert_pem, private=False)
    with capture_logs() as logs:
        for _ in range(3):
            assert await _peer_certificate(served.webhook.port, served.ca_file) == _der(first)
    # Logged once for this pair of files, not once per handshake.
    assert [e["event"] for e in logs] == ["certificate_reload_refused"]
    assert "cannot load the certificate" in logs[0]["error"]
    _write(folder / "tls.key", rotated.key_pem, private=True)
    ca = folder / "rotated-ca.crt"
    ca.write_bytes(rotated.ca_pem)
    assert await _peer_certificate(served.webhook.port, ca) == _der(rotated.cert_pem)


async def test_missing_files_keep_the_old_one_serving(served: Served) -> None:
    first = served.cert_file.read_bytes()
    served.key_file.unlink()
    with capture_logs() as logs:
        assert await _peer_certificate(served.webhook.port, served.ca_file) == _der(first)
        assert await _peer_certificate(served.webhook.port, served.ca_file) == _der(first)
    assert [e["event"] for e in logs] == ["certificate_reload_refused"]
    assert "cannot read" in logs[0]["error"]


def test_a_bad_pair_at_start_is_an_error_naming_the_files(tmp_path: Path) -> None:
    one, other = _fresh(), _fresh()
    (tmp_path / "tls.crt").write_bytes(one.cert_pem)
    (tmp_path / "tls.key").write_bytes(other.key_pem)
    with pytest.raises(CertificateError, match=r"cannot load the certificate '.*tls\.crt' with"):
        ServingCertificate(tmp_path / "tls.crt", tmp_path / "tls.key")
    with pytest.raises(CertificateError, match=r"cannot read .*nothing\.key"):
        ServingCertificate(tmp_path / "tls.crt", tmp_path / "nothing.key")
