"""HTTP checks over real TLS on loopback: a server whose certificate is signed by a CA of
the test's own passes against the runbook's pinned bundle, fails against the default
trust, and the one context a process keeps per trust source serves requests from many
threads."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import re
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cutover.errors import PermanentStepError, TransientStepError
from cutover.phases import endpoints
from cutover.phases.actions import http_request
from cutover.runbook import parse_runbook
from cutover.runbook.model import HttpStep
from tests.unit.runbook_texts import MINIMAL


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, signer, *, ca: bool):
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def https_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on loopback answering 200 to every GET, and its CA's bundle."""
    where = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("cutover test CA", ca_key, None, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("localhost", key, ca.subject, ca_key, ca=False)
    (where / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (where / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (where / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(where / "server.pem", where / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}/health", where / "ca.pem"
    finally:
        server.shutdown()
        server.server_close()


def _runbook(tls: str = ""):
    return parse_runbook(MINIMAL.replace("applications:\n", f"{tls}applications:\n", 1), "rb.yaml", {})


def test_a_pinned_bundle_passes_the_servers_certificate_and_the_default_trust_refuses_it(https_server) -> None:
    url, ca = https_server
    step = HttpStep(url=url)
    pinned = endpoints.tls_verify(_runbook(f"tls: {{ca_bundle: {ca}}}\n"), "x")
    outcome = http_request(step, label="gis.smoke[0] http", timeout_s=5, verify=pinned)
    assert outcome.status == 200
    with pytest.raises(TransientStepError, match=r"gis\.smoke\[0\] http: GET .*CERTIFICATE_VERIFY_FAILED"):
        http_request(step, label="gis.smoke[0] http", timeout_s=5, verify=endpoints.tls_verify(_runbook(), "x"))


def test_the_one_context_per_trust_source_serves_concurrent_checks(https_server) -> None:
    url, ca = https_server
    runbook = _runbook(f"tls: {{ca_bundle: {ca}}}\n")
    contexts = {id(endpoints.tls_verify(runbook, "x")) for _ in range(3)}
    assert len(contexts) == 1, "the bundle is loaded once, not per check"
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(
                lambda i: http_request(
                    HttpStep(url=url), label=f"app{i}.smoke[0] http", timeout_s=5, verify=endpoints.tls_verify(runbook, "x")
                ),
                range(24),
            )
        )
    assert [o.status for o in outcomes] == [200] * 24


def test_a_default_trust_that_cannot_be_loaded_names_the_variable(tmp_path, monkeypatch) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(broken))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    expected = re.escape(f"the default CA trust (SSL_CERT_FILE={broken}) cannot be loaded: ")
    with pytest.raises(PermanentStepError, match=expected):
        endpoints.tls_verify(_runbook(), "x")
