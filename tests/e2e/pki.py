"""Certificates made in the tests with `cryptography`: CAs, server and client
certificates signed by them, written as PEM files. Shared by test_tls.py (the
gateway's own listener) and test_https_upstreams.py (servers behind it)."""

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(subject: str, issuer=None, *, ca=False, sans=(), client=False):
    """A key and certificate, signed by `issuer` (key, cert) or self-signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    signer_key, signer_name = (issuer[0], issuer[1].subject) if issuer else (key, name(subject))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if not ca:
        usage = x509.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return key, builder.sign(signer_key, hashes.SHA256())


def write_pem(path: Path, key, cert) -> None:
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def replace_pem(path: Path, key, cert) -> None:
    """Writes new files beside the old ones, then renames them over: what a
    certificate manager does."""
    tmp = path.with_name(path.name + ".new")
    write_pem(tmp, key, cert)
    tmp.with_suffix(".key").replace(path.with_suffix(".key"))
    tmp.with_suffix(".crt").replace(path.with_suffix(".crt"))
