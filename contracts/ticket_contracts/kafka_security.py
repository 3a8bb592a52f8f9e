"""How a Kafka client connects: plain TCP, TLS, SASL (PLAIN, SCRAM-SHA-256/512) or SASL over TLS.

One value, turned into the keyword arguments every aiokafka client takes (producer, consumer,
admin), so the service, its tools and :class:`~ticket_contracts.client.TicketClient` connect alike:

    security = KafkaSecurity(tls=True, ca_file="ca.pem", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username="tickets", sasl_password="...")
    AIOKafkaProducer(bootstrap_servers=..., **security.client_kwargs())
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.ca_file or self.cert_file:
            object.__setattr__(self, "tls", True)  # a CA or a client certificate only makes sense over TLS
        if self.key_file and not self.cert_file:
            raise ValueError("a Kafka TLS key file needs its certificate file")
        if self.sasl_mechanism:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ValueError(f"unknown SASL mechanism {self.sasl_mechanism!r}; one of {', '.join(SASL_MECHANISMS)}")
            if not self.sasl_username or not self.sasl_password:
                raise ValueError(f"SASL {self.sasl_mechanism} needs a user name and a password")

    @property
    def protocol(self) -> str:
        """Kafka's ``security.protocol``."""
        if self.sasl_mechanism:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context (the CA file, else the system's CAs), or None without TLS.
        ``check_hostname=False`` still verifies the chain; it only skips the name check."""
        if not self.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file or None)
        context.check_hostname = self.check_hostname
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file or None, self.key_password or None)
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and ``AIOKafkaAdminClient``."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism:
            kwargs |= {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
                       "sasl_plain_password": self.sasl_password}
        return kwargs


PLAINTEXT = KafkaSecurity()
