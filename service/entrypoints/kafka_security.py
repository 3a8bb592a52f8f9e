"""Kafka TLS and SASL from the settings, for every client the service and its tools create.

The one :class:`~ticket_contracts.kafka_security.KafkaSecurity` value becomes FastStream's
``security=`` object for the broker (subscribers, publishers, its admin client) and aiokafka
keyword arguments for the relay's producer, the topic admin and :class:`TicketClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from ticket_contracts.kafka_security import KafkaSecurity

if TYPE_CHECKING:
    from service.settings import Settings

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def kafka_security(settings: Settings) -> KafkaSecurity:
    return KafkaSecurity(
        tls=settings.kafka_tls, ca_file=settings.kafka_tls_ca_file or None,
        cert_file=settings.kafka_tls_cert_file or None, key_file=settings.kafka_tls_key_file or None,
        key_password=settings.kafka_tls_key_password.get_secret_value() or None,
        check_hostname=settings.kafka_tls_check_hostname, sasl_mechanism=settings.kafka_sasl_mechanism or None,
        sasl_username=settings.kafka_sasl_username or None,
        sasl_password=settings.kafka_sasl_password.get_secret_value() or None,
    )


def faststream_security(security: KafkaSecurity) -> BaseSecurity | None:
    """FastStream's security object for the same connection (None: plain TCP)."""
    context = security.ssl_context()
    if security.sasl_mechanism:
        return _SASL[security.sasl_mechanism](
            security.sasl_username or "", security.sasl_password or "", ssl_context=context, use_ssl=security.tls
        )
    if security.tls:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None


class KafkaTlsError(RuntimeError):
    """The TLS handshake with a bootstrap server failed; the message says why (CA, host name, ...)."""


async def check_tls(bootstrap: str, security: KafkaSecurity, timeout_s: float = 10.0) -> None:
    """Before any Kafka client starts: a TLS handshake with a bootstrap server, so a wrong CA or
    host name is one clear line ("certificate verify failed: ...") instead of aiokafka's endless
    "Unable to bootstrap". A server that is merely unreachable is left to the clients' retries."""
    if not security.tls:
        return
    context = security.ssl_context()
    for server in (s.strip() for s in bootstrap.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        host = host.strip("[]")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port), ssl=context, server_hostname=host), timeout_s)
        except ssl.SSLError as error:
            detail = getattr(error, "verify_message", None)  # ssl.SSLCertVerificationError has it
            raise KafkaTlsError(f"TLS with Kafka at {server} failed: {error.reason or error}"
                                + (f" ({detail})" if detail else "")) from None
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return
