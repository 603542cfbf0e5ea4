"""What the client says when a peer's TLS certificate is not trusted: a real TLS listener."""

import datetime
import socket
import ssl
import threading

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api.client import DEFAULT_CONNECT_TIMEOUT, describe_unanswered


@pytest.fixture
def untrusted_tls_listener(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def accept_once():
        try:
            connection, _ = server.accept()
            with context.wrap_socket(connection, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass  # the client hangs up on the certificate it does not trust

    thread = threading.Thread(target=accept_once, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    thread.join(timeout=10)


def test_an_untrusted_certificate_is_named_as_such(untrusted_tls_listener):
    with pytest.raises(requests.exceptions.SSLError) as caught:
        requests.get(untrusted_tls_listener + "/healthz", timeout=5)
    message = describe_unanswered(caught.value, (DEFAULT_CONNECT_TIMEOUT, 5))
    assert "certificate was not accepted" in message
    assert "self-signed" in message or "self signed" in message
    assert "REQUESTS_CA_BUNDLE" in message
