"""Configuration from environment variables, all prefixed ``TICKETS_`` (SPEC §11).

Defaults are safe for local development; nothing is read at import time — call
:func:`load_settings` from the composition root. A ``TICKETS_*`` variable that is not a setting
stops start-up (:class:`UnknownSetting`, naming the closest valid one): a typo must not be
silently ignored. ``TICKETS_TEST_*`` and ``TICKETS_BENCH_*`` belong to the tests and benchmarks.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import uuid
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.adapters.reply_topics import DEFAULT_REPLY_TO_PATTERN


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETS_", extra="ignore")

    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/tickets",
        description="SQLAlchemy URL of the PostgreSQL database (asyncpg driver).",
    )
    database_pool_size: int = Field(8, description="Connections of the command side's pool; queries get a read-only pool of half as many.")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    consumer_group: str = Field(
        "ticket-service", description="Prefix of the consumer groups: <prefix>.commands, .queries, .user_events."
    )
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="Identifies this instance in heartbeats and logs.",
    )
    fetch_max_wait_ms: int = Field(10, description="Consumer fetch wait; ~10 ms suits low latency.")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="Event loop of `tickets run`: uvloop (libuv, less CPU per message) or Python's own asyncio loop.",
    )
    user_events_fetch_wait_ms: int = Field(
        500, ge=1, description="Fetch wait and empty-poll pause of the user-directory subscriber: directory changes "
        "need no 10 ms latency, and polling less keeps an idle instance cheap.",
    )
    idle_fetch_wait_ms: int = Field(
        100, ge=0, description="Fetch wait of the command and query subscribers after 10 s without records, and from the "
        "start until their first batch (idle instances poll less); the first batch restores TICKETS_FETCH_MAX_WAIT_MS. "
        "0: never switch.",
    )
    batch_max_records: int = Field(200, description="Most commands handled in one transaction.")
    batch_timeout_ms: int = Field(
        10, description="How long one poll for a batch waits (FastStream also pauses this long after an empty poll)."
    )
    max_message_bytes: int = Field(1_048_576, description="Larger input messages go to the DLQ.")
    producer_max_request_bytes: int = Field(
        16 * 1_048_576, description="Producer request limit; large enough to dead-letter over-size input unchanged."
    )
    relay_batch_size: int = Field(500, description="Most outbox rows the relay publishes per round.")
    relay_poll_interval_s: float = Field(1.0, description="Relay polling fallback when no NOTIFY arrives.")
    relay_process: bool = Field(
        False, description="`tickets run` relays the outbox from a child process of its own, off the command "
        "loop, for instances with a core to spare (docs/operations.md); false: on the service's event loop."
    )
    heartbeat_interval_s: float = Field(15.0, description="Seconds between heartbeats on tickets.ops.v1.")
    monitor_interval_s: float = Field(
        5.0, description="Seconds between measurements of consumer lag and outbox age (/metrics, heartbeats)."
    )
    shutdown_timeout_s: float = Field(
        10.0, description="Longest a shutdown takes, also with the database down: a batch still in hand "
        "after half of it is abandoned (nothing committed, handled again after restart)."
    )
    retry_initial_backoff_s: float = Field(0.2, description="First wait before retrying a transient failure.")
    retry_max_backoff_s: float = Field(10.0, description="Longest wait between retries.")
    http_host: str = Field("127.0.0.1", description="Bind address of the health/metrics endpoint.")
    http_port: int = Field(8080, description="Port of /livez, /readyz and /metrics (0 disables).")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: readable on a TTY, JSON otherwise."
    )
    log_level: str = Field("INFO", description="Root log level.")
    auth_mode: Literal["trust", "jwt"] | None = Field(
        None,
        description="Required. jwt: verify actor_token against the JWKS and ignore the asserted actor; "
        "trust: believe the envelope's actor (development only; `tickets dev` sets it).",
    )
    auth_jwks: str = Field("", description="auth_mode=jwt: JWKS of the token issuer, a file path or an https:// URL.")
    auth_jwks_cache_s: float = Field(300.0, description="How long the JWKS is cached before it is read again.")
    auth_jwks_min_refresh_s: float = Field(
        30.0, description="An unknown kid re-reads the JWKS (key rotation), at most this often."
    )
    auth_jwt_issuer: str = Field("", description="auth_mode=jwt: the required iss claim (no default).")
    auth_jwt_audience: str = Field("ticket-service", description="The required aud claim.")
    auth_jwt_max_lifetime_s: int = Field(3600, description="Longest accepted token lifetime (exp - iat).")
    auth_jwt_leeway_s: float = Field(30.0, description="Clock leeway for exp and iat.")
    auth_jwt_allow_hs256: bool = Field(
        False, description="Also accept HS256 tokens signed with auth_jwt_secret (shared secret; discouraged)."
    )
    auth_jwt_secret: SecretStr = Field(
        SecretStr(""), description="Shared HS256 secret (32+ bytes); only with auth_jwt_allow_hs256."
    )
    auth_gateway_accounts: list[uuid.UUID] = Field(
        [], description="User ids (JSON list) of the email-ingest gateway's service accounts, the only "
        "system actors that may send ticket.ingest_email; empty: any system actor in trust mode, none in jwt.",
    )
    kafka_tls: bool = Field(False, description="Connect to Kafka over TLS (implied by a CA or client certificate).")
    kafka_tls_ca_file: str = Field("", description="PEM CA bundle that signed the brokers' certificates (default: system CAs).")
    kafka_tls_cert_file: str = Field("", description="PEM client certificate (mutual TLS).")
    kafka_tls_key_file: str = Field("", description="PEM private key of the client certificate.")
    kafka_tls_key_password: SecretStr = Field(SecretStr(""), description="Password of the client key, if encrypted.")
    kafka_tls_check_hostname: bool = Field(True, description="Check that the broker certificate names its host.")
    kafka_sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "", description="SASL mechanism; empty: no SASL."
    )
    kafka_sasl_username: str = Field("", description="SASL user name.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password.")
    reply_to_pattern: str = Field(
        DEFAULT_REPLY_TO_PATTERN,
        description="Regular expression a reply_to topic must match in full to be written to; others are refused.",
    )
    attachment_max_bytes: int = Field(
        25 * 1_048_576, ge=1, description="Largest attachment (size_bytes) a command may reference; larger: validation_error."
    )
    attachment_uri_schemes: str = Field(
        "s3,https", description="Comma-separated URI schemes an attachment's uri may use; others: validation_error."
    )
    email_max_new_tickets_per_hour: int = Field(
        20, ge=0, description="Tickets one sender's mails may open per rolling hour (loop limit; 0: no limit); "
        "beyond it ticket.ingest_email is rate_limited, replies still pass.",
    )
    check_schema_on_start: bool = Field(True, description="Refuse to start unless the schema is at head.")
    search_text_config: str = Field(
        "english", pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$",
        description="PostgreSQL text search configuration of ticket.search (e.g. english, german, simple); "
        "changing it needs the documents rebuilt (docs/queries.md).",
    )
    erasure_customer_scope: Literal["user", "customer"] = Field(
        "user", description="On user.erased of a customer user: redact the tickets that user created (user) or "
        "every ticket of their customer (customer); their words on other tickets go either way.",
    )
    erasure_actor_id: uuid.UUID = Field(
        uuid.UUID("00000000-0000-4000-8000-00000000e4a5"),
        description="user_id of the system actor of the ticket.redact commands an erasure issues.",
    )
    erasure_actor_token: str = Field(
        "", description="auth_mode=jwt: a signed token of that system actor, sent with those commands.",
    )
    data_dir: str = Field(".data", description="Embedded stack: where PostgreSQL keeps its data.")

    @field_validator("reply_to_pattern")
    @classmethod
    def _a_regular_expression(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return pattern


PREFIX = "TICKETS_"
TOOLING_PREFIXES = ("TICKETS_TEST_", "TICKETS_BENCH_")


class UnknownSetting(ValueError):
    """A ``TICKETS_*`` environment variable that names no setting."""


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`UnknownSetting` for the first ``TICKETS_*`` variable that is not a setting."""
    known = sorted(PREFIX + name.upper() for name in Settings.model_fields)
    for variable in sorted(os.environ if environ is None else environ):
        name = variable.upper()  # pydantic-settings reads the variables case-insensitively
        if name.startswith(PREFIX) and name not in known and not name.startswith(TOOLING_PREFIXES):
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "`python -m service.settings` lists every setting"
            raise UnknownSetting(f"unknown setting {variable}: {hint}")


def load_settings(**overrides: object) -> Settings:
    check_environment()
    return Settings(**overrides)  # type: ignore[arg-type]


def describe_invalid(error: Exception) -> str:
    """One line for a settings ValidationError: the variable and pydantic's message, not the value."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)
    parts = [f"{PREFIX}{str(e['loc'][0]).upper() if e['loc'] else '?'}: {e['msg']}"
             for e in errors(include_input=False, include_url=False)]
    return "invalid setting " + "; ".join(parts)


def markdown_table() -> str:
    """The configuration table of the README: ``python -m service.settings``."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "(host name-pid)" if field.default_factory else repr(field.default)
        default = "''" if isinstance(field.default, SecretStr) else default
        lines.append(f"| `TICKETS_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
