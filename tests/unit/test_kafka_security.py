"""Kafka TLS and SASL reach every client the service and its tools create: the FastStream broker
(its producer, admin and every subscriber's consumer), the relay's producer, the topic admin of
`tickets topics` and TicketClient's admin, producer and consumer.

SASL is covered here and not against the embedded broker: Tansu 0.6's `--authentication` offers
no PLAIN mechanism ("NoSharedMechanism") and keeps SCRAM users in its storage, which on the
memory-only build can only be created through an already authenticated connection (see
docs/operations.md). TLS is tested for real in tests/security/.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from faststream._internal.utils.data import filter_by_dict
from faststream.kafka.schemas.params import ConsumerConnectionParams
from ticket_contracts.client import TicketClient
from ticket_contracts.kafka_security import KafkaSecurity

from service.entrypoints.kafka_security import faststream_security, kafka_security
from service.app import create_app, relay_producer
from service.devstack import topics as devstack_topics
from service.settings import load_settings
from tests.support.tls import CertificateAuthority

PASSWORD = "pa55-w0rd-not-for-logs"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.mark.parametrize(("security", "protocol"), [
    (KafkaSecurity(), "PLAINTEXT"),
    (KafkaSecurity(tls=True), "SSL"),
    (KafkaSecurity(sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p"), "SASL_PLAINTEXT"),
    (KafkaSecurity(tls=True, sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p"), "SASL_SSL"),
])
def test_protocol(security: KafkaSecurity, protocol: str) -> None:
    assert security.protocol == protocol
    assert security.client_kwargs()["security_protocol"] == protocol


def test_a_ca_file_implies_tls_and_verifies(ca: CertificateAuthority) -> None:
    security = KafkaSecurity(ca_file=str(ca.ca_file))
    context = security.ssl_context()
    assert security.tls and context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    relaxed = KafkaSecurity(ca_file=str(ca.ca_file), check_hostname=False).ssl_context()
    assert relaxed is not None and relaxed.verify_mode is ssl.CERT_REQUIRED and not relaxed.check_hostname


def test_client_certificate_is_loaded(ca: CertificateAuthority) -> None:
    cert = ca.issue("tickets-client")
    KafkaSecurity(ca_file=str(ca.ca_file), cert_file=str(cert.cert_file), key_file=str(cert.key_file)).ssl_context()
    with pytest.raises(ssl.SSLError):  # a key that is not the certificate's
        other = ca.issue("someone-else")
        KafkaSecurity(cert_file=str(cert.cert_file), key_file=str(other.key_file)).ssl_context()


@pytest.mark.parametrize(("values", "match"), [
    ({"sasl_mechanism": "GSSAPI", "sasl_username": "u", "sasl_password": "p"}, "unknown SASL mechanism"),
    ({"sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "u"}, "needs a user name and a password"),
    ({"key_file": "k.pem"}, "needs its certificate file"),
])
def test_incomplete_configuration_is_refused(values: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KafkaSecurity(**values)


def test_the_password_never_shows_in_a_repr() -> None:
    security = KafkaSecurity(sasl_mechanism="PLAIN", sasl_username="u", sasl_password=PASSWORD, key_password=PASSWORD)
    assert PASSWORD not in repr(security)
    settings = load_settings(kafka_sasl_password=PASSWORD, kafka_tls_key_password=PASSWORD)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())


MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def secure_settings(ca: CertificateAuthority, mechanism: str) -> Any:
    return load_settings(kafka_tls_ca_file=str(ca.ca_file), kafka_sasl_mechanism=mechanism,
                         kafka_sasl_username="tickets", kafka_sasl_password=PASSWORD, check_schema_on_start=False)


def expect_sasl_ssl(kwargs: dict[str, Any], mechanism: str) -> None:
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == mechanism
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("tickets", PASSWORD)
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_settings_reach_the_broker_its_consumers_and_the_relay(ca: CertificateAuthority, mechanism: str) -> None:
    settings = secure_settings(ca, mechanism)
    _, rt = create_app(settings)
    broker_kwargs = rt.broker._connection_kwargs  # what FastStream builds its producer and admin from
    expect_sasl_ssl(broker_kwargs, mechanism)
    consumer_kwargs, _ = filter_by_dict(ConsumerConnectionParams, broker_kwargs)  # every subscriber's consumer
    expect_sasl_ssl(consumer_kwargs, mechanism)
    producer = relay_producer(settings, kafka_security(settings))
    client = producer.client
    assert client._security_protocol == "SASL_SSL" and client._sasl_mechanism == mechanism
    assert (client._sasl_plain_username, client._sasl_plain_password) == ("tickets", PASSWORD)
    assert client._ssl_context is not None
    await producer.stop()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_faststream_security_objects(ca: CertificateAuthority, mechanism: str) -> None:
    from faststream.kafka.security import parse_security

    security = kafka_security(secure_settings(ca, mechanism))
    expect_sasl_ssl(parse_security(faststream_security(security)), mechanism)
    assert faststream_security(KafkaSecurity()) is None
    assert parse_security(faststream_security(KafkaSecurity(tls=True)))["security_protocol"] == "SSL"


class Recorder:
    """Stands in for an aiokafka client class and records the keyword arguments it was built with."""

    built: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        Recorder.built.append((self.name, kwargs))
        raise _Stop


class _Stop(Exception):
    pass


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_settings_reach_the_topic_admin(ca: CertificateAuthority, mechanism: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka.admin

    Recorder.built = []
    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", Recorder("admin"))
    with pytest.raises(_Stop):
        await devstack_topics.ensure_topics("b:9093", security=kafka_security(secure_settings(ca, mechanism)))
    [(_, kwargs)] = Recorder.built
    expect_sasl_ssl(kwargs, mechanism)


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_settings_reach_every_part_of_ticket_client(ca: CertificateAuthority, mechanism: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka
    import aiokafka.admin

    class Quiet:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            Recorder.built.append((type(self).__name__, kwargs))

        async def start(self) -> None: ...
        async def stop(self) -> None: ...
        async def close(self) -> None: ...
        async def create_topics(self, *args: Any) -> None: ...
        def assign(self, *args: Any) -> None: ...
        async def getmany(self, **kwargs: Any) -> dict[Any, Any]:
            return {}

    Recorder.built = []
    for name, module in (("AIOKafkaAdminClient", aiokafka.admin), ("AIOKafkaProducer", aiokafka),
                         ("AIOKafkaConsumer", aiokafka)):
        monkeypatch.setattr(module, name, type(name, (Quiet,), {}))
    security = kafka_security(secure_settings(ca, mechanism))
    async with TicketClient("b:9093", security=security):
        pass
    assert {name for name, _ in Recorder.built} == {"AIOKafkaAdminClient", "AIOKafkaProducer", "AIOKafkaConsumer"}
    for _, kwargs in Recorder.built:
        expect_sasl_ssl(kwargs, mechanism)


def test_no_security_settings_mean_plain_tcp() -> None:
    assert kafka_security(load_settings()) == KafkaSecurity()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_settings_reach_the_operator_tools(ca: CertificateAuthority, mechanism: str) -> None:
    from service.ops.kafka import client_options

    options = client_options(secure_settings(ca, mechanism))
    assert options["bootstrap_servers"] == "127.0.0.1:9092"
    expect_sasl_ssl(options, mechanism)
