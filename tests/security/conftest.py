"""A production-shaped stack of its own: the embedded broker behind a TLS-terminating proxy (the
broker advertises the proxy, so every client connection is TLS), a database of its own, and the
service in ``jwt`` mode verifying tokens against a JWKS file of a test identity provider."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm
from ticket_contracts.client import TicketClient
from ticket_contracts.kafka_security import KafkaSecurity

from service.app import running
from service.devstack import EmbeddedKafka, ensure_topics
from service.devstack.kafka import free_port
from service.runtime import Runtime
from tests.e2e.conftest import e2e_settings
from tests.support.infra import migrated_database
from tests.support.tls import CertificateAuthority, TlsProxy

ISSUER = "https://id.example.test"
GATEWAY = uuid.uuid4()


@dataclass
class TlsBroker:
    ca: CertificateAuthority
    proxy: TlsProxy
    kafka: EmbeddedKafka
    directory: Path

    @property
    def bootstrap(self) -> str:
        return self.proxy.address

    @property
    def security(self) -> KafkaSecurity:
        return KafkaSecurity(ca_file=str(self.ca.ca_file))


@pytest.fixture(scope="package")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    directory = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority(directory)
    port = free_port()
    proxy = TlsProxy(ca.issue("127.0.0.1", "localhost"), ("127.0.0.1", port)).start()
    kafka = EmbeddedKafka(log_dir=directory)
    kafka.start(port, advertise=f"tcp://{proxy.address}")
    try:
        yield TlsBroker(ca, proxy, kafka, directory)
    finally:
        kafka.stop()
        proxy.stop()


class IdentityProvider:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(self.key.public_key())) | {"kid": "idp-1", "alg": "EdDSA"}
        path.write_text(json.dumps({"keys": [jwk]}))


@pytest.fixture(scope="package")
def idp(tmp_path_factory: pytest.TempPathFactory) -> IdentityProvider:
    return IdentityProvider(tmp_path_factory.mktemp("idp") / "jwks.json")


@pytest.fixture(scope="package")
async def secure_database(database_server_url: str) -> AsyncIterator[str]:
    async with migrated_database(database_server_url) as url:
        yield url


@pytest.fixture(scope="package")
async def secure_service(tls_broker: TlsBroker, idp: IdentityProvider, secure_database: str) -> AsyncIterator[Runtime]:
    await ensure_topics(tls_broker.bootstrap, partitions=2, security=tls_broker.security)
    settings = e2e_settings(
        secure_database, tls_broker.bootstrap, auth_mode="jwt", auth_jwks=str(idp.path), auth_jwt_issuer=ISSUER,
        auth_gateway_accounts=[GATEWAY], kafka_tls_ca_file=str(tls_broker.ca.ca_file),
    )
    async with running(settings) as rt:
        yield rt


@pytest.fixture(scope="package")
async def secure_client(tls_broker: TlsBroker, secure_service: Runtime) -> AsyncIterator[TicketClient]:
    async with TicketClient(tls_broker.bootstrap, timeout=30.0, security=tls_broker.security) as client:
        yield client
