"""Redis servers of the storage tests, started here: a Sentinel set-up (primary, replica,
three Sentinels) and a TLS-only Redis with a certificate from a throwaway CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from return_notify.devtools.redis_sentinel import SentinelSetup, redis_server_binary
from return_notify.devtools.wheel_servers import free_port, tail, terminate


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[SentinelSetup]:
    with SentinelSetup(str(tmp_path)) as setup:
        yield setup


@dataclass(frozen=True)
class TlsRedis:
    port: int
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that did not

    def url(self, ca: Path | None = None) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={ca or self.ca}"


def _ca(directory: Path, name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _server_cert(directory: Path, ca_key: Any, ca_cert: Any) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """A Redis that speaks TLS only (no plain port), certificate signed by a test CA."""
    directory = tmp_path_factory.mktemp("tls-redis")
    ca_key, ca_cert = _ca(directory, "ca")
    _ca(directory, "other-ca")
    _server_cert(directory, ca_key, ca_cert)
    binary = redis_server_binary()
    port = free_port()
    log = directory / "redis.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(directory / "server.pem"),
             "--tls-key-file", str(directory / "server.key"),
             "--tls-ca-cert-file", str(directory / "ca.pem"), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", str(directory)],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while "Ready to accept connections" not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                if "tls" in tail(log).lower():  # a build without TLS (BUILD_TLS=no)
                    pytest.skip(f"{binary} has no TLS support: install Debian's redis-server")
                raise RuntimeError(f"TLS Redis exited:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"TLS Redis not ready:\n{tail(log)}")
            time.sleep(0.1)
        yield TlsRedis(port, directory / "ca.pem", directory / "other-ca.pem")
    finally:
        terminate("tls-redis", proc, signal.SIGTERM)
