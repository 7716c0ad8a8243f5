"""https receivers: the POST connects to the address that was checked, yet the TLS server name
and the certificate check are the URL's host, so pinning the address costs no security."""

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apps.events import webhooks
from apps.events.models import EventType, WebhookDelivery
from apps.events.services import event_emit
from tests.events.webhook_receiver import endpoint_for, start_receiver

pytestmark = pytest.mark.django_db


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca: bool, dns: str | None = None):
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture
def certificate_authority(tmp_path, settings):
    """A CA of the test's own, which the node trusts (WEBHOOK_CA_BUNDLE); issue(host) gives
    a server context whose certificate names `host`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(
        _name("Webhook test CA"), _name("Webhook test CA"), ca_key.public_key(), ca_key, ca=True
    )
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    settings.WEBHOOK_CA_BUNDLE = str(bundle)

    def issue(host: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(
            _name(host), ca_cert.subject, key.public_key(), ca_key, ca=False, dns=host
        )
        cert_file, key_file = tmp_path / f"{host}.pem", tmp_path / f"{host}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context

    return issue


@pytest.fixture
def https_receiver(request):
    servers = []

    def start(context: ssl.SSLContext):
        receiver, server = start_receiver(tls=context)
        receiver.base = "https://localhost"
        servers.append(server)
        return receiver

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _deliver(member, endpoint) -> WebhookDelivery:
    event = event_emit(
        type=EventType.JOB_FAILED, summary="Job 3 failed", data={"job": 3}, users=[member]
    )
    delivery = WebhookDelivery.objects.get(event=event, endpoint=endpoint)
    result = webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, attempts=0)
    assert result is not None
    return result


def test_an_https_receiver_is_reached_at_the_checked_address_under_its_name(
    member, certificate_authority, https_receiver
):
    receiver = https_receiver(certificate_authority("localhost"))
    endpoint = endpoint_for(member, receiver, "tls")

    delivery = _deliver(member, endpoint)

    assert delivery.state == WebhookDelivery.State.SUCCEEDED, delivery.last_error
    (got,) = receiver.got("tls")
    assert got.verified
    assert got.headers["Host"] == f"localhost:{receiver.port}"


def test_a_certificate_for_another_name_is_refused(member, certificate_authority, https_receiver):
    receiver = https_receiver(certificate_authority("elsewhere.example"))
    endpoint = endpoint_for(member, receiver, "impostor")

    delivery = _deliver(member, endpoint)

    assert delivery.state == WebhookDelivery.State.RETRYING
    assert delivery.last_status_code is None
    assert "certificate" in delivery.last_error.lower() or "hostname" in delivery.last_error
    assert receiver.got("impostor") == []
