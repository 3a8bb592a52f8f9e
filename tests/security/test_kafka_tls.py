"""Kafka over TLS for real: the embedded broker behind a TLS-terminating proxy that it advertises.
A wrong CA or a certificate for another host name fails at once, in one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from aiokafka.errors import KafkaConnectionError
from ticket_contracts.client import TicketClient
from ticket_contracts.kafka_security import KafkaSecurity

from service.entrypoints.kafka_security import KafkaTlsError, check_tls
from service.app import running
from service.devstack import ensure_topics
from tests.e2e.conftest import e2e_settings
from tests.security.conftest import TlsBroker
from tests.support.tls import CertificateAuthority, TlsProxy


@pytest.fixture(scope="module")
def elsewhere(tls_broker: TlsBroker) -> Iterator[TlsProxy]:
    """A second proxy to the same broker whose certificate (from the right CA) names another host."""
    proxy = TlsProxy(tls_broker.ca.issue("kafka.elsewhere.test"), ("127.0.0.1", tls_broker.kafka.port or 0)).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def wrong_ca(tls_broker: TlsBroker) -> KafkaSecurity:
    return KafkaSecurity(ca_file=str(CertificateAuthority(tls_broker.directory, "some other CA").ca_file))


async def test_the_right_ca_connects(tls_broker: TlsBroker) -> None:
    await check_tls(tls_broker.bootstrap, tls_broker.security)
    await ensure_topics(tls_broker.bootstrap, ["tls.probe.v1"], partitions=1, security=tls_broker.security)


async def test_plain_tcp_to_the_tls_listener_does_not_connect(tls_broker: TlsBroker) -> None:
    with pytest.raises(KafkaConnectionError):
        async with TicketClient(tls_broker.bootstrap, timeout=5):
            pass


async def test_a_wrong_ca_fails_clearly(tls_broker: TlsBroker, wrong_ca: KafkaSecurity) -> None:
    with pytest.raises(KafkaTlsError, match=rf"TLS with Kafka at {tls_broker.bootstrap} failed: "
                                            r"CERTIFICATE_VERIFY_FAILED.*unable to get local issuer"):
        await check_tls(tls_broker.bootstrap, wrong_ca)
    with pytest.raises(KafkaConnectionError):  # aiokafka itself refuses too
        async with TicketClient(tls_broker.bootstrap, timeout=5, security=wrong_ca):
            pass


async def test_the_service_refuses_to_start_with_a_wrong_ca(tls_broker: TlsBroker, wrong_ca: KafkaSecurity,
                                                            secure_database: str) -> None:
    settings = e2e_settings(secure_database, tls_broker.bootstrap, kafka_tls_ca_file=wrong_ca.ca_file)
    with pytest.raises(KafkaTlsError, match="CERTIFICATE_VERIFY_FAILED"):
        async with running(settings):
            pass


async def test_a_certificate_for_another_host_fails_unless_the_check_is_off(
    tls_broker: TlsBroker, elsewhere: TlsProxy
) -> None:
    with pytest.raises(KafkaTlsError, match="mismatch, certificate is not valid"):
        await check_tls(elsewhere.address, tls_broker.security)
    relaxed = KafkaSecurity(ca_file=str(tls_broker.ca.ca_file), check_hostname=False)
    await check_tls(elsewhere.address, relaxed)  # the chain is still verified, only the name is not
    await ensure_topics(elsewhere.address, ["tls.probe.v1"], partitions=1, security=relaxed)


def test_tickets_topics_says_what_is_wrong_in_one_line(tls_broker: TlsBroker, wrong_ca: KafkaSecurity) -> None:
    env = os.environ | {"TICKETS_KAFKA_BOOTSTRAP": tls_broker.bootstrap, "TICKETS_KAFKA_TLS_CA_FILE": wrong_ca.ca_file}
    done = subprocess.run([sys.executable, "-m", "service.cli", "topics"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "tickets topics: TLS with Kafka at" in lines[0] and "CERTIFICATE_VERIFY_FAILED" in lines[0]
    env["TICKETS_KAFKA_TLS_CA_FILE"] = str(tls_broker.ca.ca_file)
    done = subprocess.run([sys.executable, "-m", "service.cli", "topics"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
