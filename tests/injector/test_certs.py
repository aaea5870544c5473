"""`certs`: the CA and serving certificate verify as a client would; caBundle set or printed."""

from __future__ import annotations

import argparse
import base64
import io
import json
import shlex
import ssl
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from sidecar.injector import certs

NAMES = [
    "shutdown-coordinator-injector",
    "shutdown-coordinator-injector.shutdown-coordinator-system",
    "shutdown-coordinator-injector.shutdown-coordinator-system.svc",
    "shutdown-coordinator-injector.shutdown-coordinator-system.svc.cluster.local",
]

MANIFEST = """\
# keep this comment
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: shutdown-coordinator-injector}
webhooks:
  - name: inject.shutdown-coordinator.io
    clientConfig:
      service: {name: shutdown-coordinator-injector, namespace: shutdown-coordinator-system}
      caBundle: ""   # set by certs
  - name: other.shutdown-coordinator.io
    clientConfig:
      caBundle: old
"""


def _args(out: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    certs.add_arguments(parser)
    return parser.parse_args(["--out", str(out), *extra])


def test_the_dns_names_are_the_services_four() -> None:
    assert certs.dns_names("shutdown-coordinator-injector", "shutdown-coordinator-system") == NAMES


def test_the_serving_certificate_chains_to_the_ca_for_every_name(tmp_path: Path) -> None:
    issued = certs.issue(NAMES, days=30)
    ca = x509.load_pem_x509_certificate(issued.ca_pem)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == NAMES
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() >= 30 * 86400
    # What a TLS client does: load the chain, and trust only the CA.
    (tmp_path / "c").write_bytes(issued.cert_pem)
    (tmp_path / "k").write_bytes(issued.key_pem)
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tmp_path / "c", tmp_path / "k")
    assert base64.b64decode(issued.ca_bundle) == issued.ca_pem


def test_the_command_writes_the_files_and_sets_every_ca_bundle(tmp_path: Path) -> None:
    manifest = tmp_path / "webhook.yaml"
    manifest.write_text(MANIFEST)
    out = io.StringIO()
    code = certs.run(_args(tmp_path / "tls", "--manifest", str(manifest)), out=out)
    assert code == 0
    ca = (tmp_path / "tls" / "ca.crt").read_bytes()
    bundle = base64.b64encode(ca).decode()
    assert stat.S_IMODE((tmp_path / "tls" / "tls.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    text = manifest.read_text()
    assert text == MANIFEST.replace('caBundle: ""', f"caBundle: {bundle}").replace(
        "caBundle: old", f"caBundle: {bundle}"
    )
    assert "# keep this comment" in text
    assert "# set by certs" in text
    lines = out.getvalue().splitlines()
    assert f"caBundle: {bundle}" in lines
    command = shlex.split(lines[-1])
    assert command[:4] == [
        "kubectl",
        "patch",
        "mutatingwebhookconfiguration",
        "shutdown-coordinator-injector",
    ]
    patch = json.loads(command[command.index("-p") + 1])
    assert patch == [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle}]


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    assert certs.run(_args(tmp_path), out=io.StringIO()) == 0
    first = (tmp_path / "tls.crt").read_bytes()
    err = io.StringIO()
    assert certs.run(_args(tmp_path), out=io.StringIO(), err=err) == 2
    assert "already exist; pass --force" in err.getvalue()
    assert (tmp_path / "tls.crt").read_bytes() == first
    assert certs.run(_args(tmp_path, "--force"), out=io.StringIO()) == 0
    assert (tmp_path / "tls.crt").read_bytes() != first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--days", "0"], "--days must be between 1 and 3650, got 0"),
        (["--configuration", "nothing"], "--configuration expects KIND/NAME, got 'nothing'"),
        (["--manifest", "{plain}"], "has no `caBundle:` key to set"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("kind: ConfigMap\n")
    extra = [str(plain) if e == "{plain}" else e for e in extra]
    err = io.StringIO()
    assert certs.run(_args(tmp_path / "tls", *extra), out=io.StringIO(), err=err) == 2
    assert message in err.getvalue()
    assert not (tmp_path / "tls").exists()
    assert plain.read_text() == "kind: ConfigMap\n"


def test_the_shipped_webhook_configuration_gets_its_ca_bundle(tmp_path: Path) -> None:
    shipped = Path(__file__).parents[2] / "manifests" / "base" / "mutating-webhook.yaml"
    manifest = tmp_path / "mutating-webhook.yaml"
    manifest.write_text(shipped.read_text())
    assert certs.run(_args(tmp_path / "tls", "--manifest", str(manifest)), out=io.StringIO()) == 0
    bundle = base64.b64encode((tmp_path / "tls" / "ca.crt").read_bytes()).decode()
    (configuration,) = yaml.safe_load_all(manifest.read_text())
    assert [w["clientConfig"]["caBundle"] for w in configuration["webhooks"]] == [bundle]
    assert configuration["webhooks"][0]["clientConfig"]["service"]["namespace"] == (
        certs.DEFAULT_NAMESPACE
    )
    assert configuration["metadata"]["name"] == certs.DEFAULT_CONFIGURATIONS[0].split("/")[1]
