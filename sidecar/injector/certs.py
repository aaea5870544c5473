"""`shutdown-coordinator certs`: a CA and the webhook's serving certificate, and the caBundle.

The CA signs one serving certificate and its key is then dropped (never written): nothing else
is ever signed with it, and a new run makes a new pair and a new caBundle. Written files are
named as a `kubernetes.io/tls` Secret holds them (`tls.crt`, `tls.key`, `ca.crt`), keys mode 0600.
The caBundle goes where the user says: into manifest files (every `caBundle:` value is replaced,
comments and layout kept) and as `kubectl patch` commands for configurations already applied.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: A serving certificate lives a year by default; rotate by running the command again.
DEFAULT_DAYS = 365
#: Ten years at most: a longer-lived CA whose key is gone is only a longer-lived risk.
MAX_DAYS = 3650
#: Issued this long in the past, so a node whose clock is a little behind accepts it.
BACKDATE = dt.timedelta(minutes=5)
DEFAULT_SERVICE = "shutdown-coordinator-injector"
DEFAULT_NAMESPACE = "shutdown-coordinator-system"
DEFAULT_CONFIGURATIONS = ("mutatingwebhookconfiguration/shutdown-coordinator-injector",)
#: X.509's upper bound on a common name.
CN_MAX_CHARS = 64
_CA_BUNDLE = re.compile(
    r"""^(?P<key>[ \t]*(?:-[ \t]+)?caBundle:)[ \t]*(?:"[^"\n]*"|'[^'\n]*'|[^\s#]*)""",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Issued:
    """PEM bytes: the CA's certificate (the caBundle), the serving certificate and its key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def ca_bundle(self) -> str:
        """The CA certificate as a webhook configuration's `clientConfig.caBundle` holds it."""
        return base64.b64encode(self.ca_pem).decode()


def dns_names(service: str, namespace: str, cluster_domain: str = "cluster.local") -> list[str]:
    """Every name the API server or a pod may use for the Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    ]


def issue(
    names: Sequence[str], *, days: int = DEFAULT_DAYS, now: dt.datetime | None = None
) -> Issued:
    """A fresh CA (ECDSA P-256) and a serving certificate for `names`, both valid `days` days."""
    start = (now or dt.datetime.now(dt.UTC)) - BACKDATE
    end = start + BACKDATE + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{names[0]} webhook CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(min(names, key=lambda n: (len(n) > CN_MAX_CHARS, -len(n)))))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = serialization.Encoding.PEM
    return Issued(ca.public_bytes(pem), cert.public_bytes(pem), key_pem)


def _name(common_name: str) -> x509.Name:
    """A subject; clients match the SANs, so a long name is only cut short here."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:CN_MAX_CHARS])])


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def with_ca_bundle(text: str, ca_bundle: str) -> tuple[str, int]:
    """`text` with every `caBundle:` value replaced by `ca_bundle`, and how many there were."""
    return _CA_BUNDLE.subn(lambda m: f"{m['key']} {ca_bundle}", text)


def patch_command(configuration: str, ca_bundle: str, webhooks: int = 1) -> str:
    """`kubectl patch` setting the caBundle of the first `webhooks` webhooks of a configuration."""
    kind, _, name = configuration.partition("/")
    ops = [
        {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": ca_bundle}
        for i in range(webhooks)
    ]
    patch = json.dumps(ops, separators=(",", ":"))
    return shlex.join(["kubectl", "patch", kind, name, "--type", "json", "-p", patch])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `certs` command's options."""
    parser.add_argument("--service", default=DEFAULT_SERVICE, help="the webhook's Service name")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the Service's namespace")
    parser.add_argument("--cluster-domain", default="cluster.local")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="validity, in days")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for ca.crt, tls.crt and tls.key"
    )
    parser.add_argument("--force", action="store_true", help="overwrite files already there")
    parser.add_argument(
        "--manifest",
        type=Path,
        action="append",
        default=[],
        help="a YAML file whose every `caBundle:` value is set (repeatable)",
    )
    parser.add_argument(
        "--configuration",
        action="append",
        help="KIND/NAME of an applied webhook configuration to print a kubectl patch for "
        f"(repeatable; default: {DEFAULT_CONFIGURATIONS[0]})",
    )


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Write the files, set the caBundle in the manifests, print the patch commands."""
    try:
        files, manifests = _inputs(args)
    except _UsageError as e:
        err.write(f"certs: {e}\n")
        return EXIT_USAGE
    except OSError as e:
        err.write(f"certs: cannot read {e.filename!r}: {e.strerror}\n")
        return EXIT_FAILED
    issued = issue(dns_names(args.service, args.namespace, args.cluster_domain), days=args.days)
    for path, text in manifests.items():
        manifests[path], count = with_ca_bundle(text, issued.ca_bundle)
        if count == 0:
            err.write(f"certs: the manifest {str(path)!r} has no `caBundle:` key to set\n")
            return EXIT_USAGE
    try:
        files[0].parent.mkdir(parents=True, exist_ok=True)
        for file, data in zip(files, (issued.ca_pem, issued.cert_pem, issued.key_pem), strict=True):
            _write(file, data, private=file.name.endswith(".key"))
        for path, text in manifests.items():
            _write(path, text.encode(), private=False)
    except OSError as e:
        err.write(f"certs: cannot write {e.filename!r}: {e.strerror}\n")
        return EXIT_FAILED
    out.write(f"wrote {', '.join(str(f) for f in files)}\n")
    out.writelines(f"set the caBundle in {path}\n" for path in manifests)
    out.write(f"caBundle: {issued.ca_bundle}\n")
    configurations = args.configuration or DEFAULT_CONFIGURATIONS
    out.writelines(patch_command(c, issued.ca_bundle) + "\n" for c in configurations)
    return EXIT_OK


class _UsageError(Exception):
    """An argument that cannot work, said as the user should read it."""


def _inputs(args: argparse.Namespace) -> tuple[list[Path], dict[Path, str]]:
    """The files to write and the manifests' text; raises _UsageError or OSError."""
    if not 1 <= args.days <= MAX_DAYS:
        raise _UsageError(f"--days must be between 1 and {MAX_DAYS}, got {args.days}")
    for configuration in args.configuration or ():
        kind, _, name = configuration.partition("/")
        if not kind or not name:
            raise _UsageError(f"--configuration expects KIND/NAME, got {configuration!r}")
    folder: Path = args.out
    files = [folder / name for name in ("ca.crt", "tls.crt", "tls.key")]
    existing = [str(f) for f in files if f.exists()]
    if existing and not args.force:
        raise _UsageError(f"{', '.join(existing)} already exist; pass --force to replace them")
    manifests: dict[Path, str] = {}
    for path in args.manifest:
        try:
            manifests[path] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise _UsageError(f"the manifest {str(path)!r} is not UTF-8 text") from None
    return files, manifests


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    temporary.replace(path)
