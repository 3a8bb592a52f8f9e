"""The ``tickets`` command: run the service, migrate, create topics, or run everything embedded."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from service.logging import configure_logging, get_logger
from service.settings import Settings, UnknownSetting, describe_invalid, load_settings

if TYPE_CHECKING:
    from service.devstack import EmbeddedStack

_log = get_logger("tickets.cli")
_DEV_KEYS = Path(__file__).resolve().parents[1] / "dev" / "keys"
DEV_GATEWAY = "6a7e0000-0000-4000-8000-000000000001"
#: `tickets dev --jwt`: the development issuer, key pair and email-gateway account (dev/keys/README.md).
DEV_JWT = {
    "TICKETS_AUTH_MODE": "jwt",
    "TICKETS_AUTH_JWKS": str(_DEV_KEYS / "jwks.json"),
    "TICKETS_AUTH_JWT_ISSUER": "tickets-dev",
    "TICKETS_AUTH_GATEWAY_ACCOUNTS": f'["{DEV_GATEWAY}"]',
}


def event_loop_runner(settings: Settings) -> Any:
    """``asyncio.run``, or uvloop's equivalent when TICKETS_EVENT_LOOP says uvloop (the default)."""
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


def _run_service(settings: Settings) -> None:
    from service.adapters.auth import AuthConfigError
    from service.entrypoints.kafka_security import KafkaTlsError
    from service.app import run_service

    try:
        event_loop_runner(settings)(run_service(settings))
    except (AuthConfigError, KafkaTlsError) as error:
        sys.exit(f"tickets: {error}")
    except KeyboardInterrupt:  # run_service handles signals itself; this covers a second Ctrl-C
        _log.info("interrupted")


def _migrate(database_url: str) -> None:
    from service.migrate import upgrade

    upgrade(database_url)


def _require_http_port(command: str, settings: Settings, port: int, how: str) -> None:
    """One clear line, before anything starts, when the health/metrics port is taken."""
    from service.devstack.kafka import PortInUse, require_free_port

    if not port:
        return
    try:
        require_free_port(settings.http_host, port)
    except PortInUse as exc:
        sys.exit(f"tickets {command}: the HTTP port (health and metrics) {exc}; {how}")


def cmd_run(args: argparse.Namespace) -> None:
    settings = load_settings()
    _require_http_port("run", settings, settings.http_port, "pick another with TICKETS_HTTP_PORT (0 disables it).")
    _run_service(settings)


def cmd_migrate(args: argparse.Namespace) -> None:
    _migrate(load_settings().database_url)
    _log.info("database schema is at head")


def cmd_topics(args: argparse.Namespace) -> None:
    from service.devstack.topics import ensure_topics

    from service.entrypoints.kafka_security import KafkaTlsError, check_tls, kafka_security

    settings = load_settings()
    bootstrap, security = settings.kafka_bootstrap, kafka_security(settings)

    async def create() -> None:
        await check_tls(bootstrap, security)
        await ensure_topics(bootstrap, partitions=args.partitions, replication_factor=args.replication_factor,
                            security=security)

    try:
        asyncio.run(create())
    except KafkaTlsError as error:
        sys.exit(f"tickets topics: {error}")
    _log.info("every topic exists", bootstrap=bootstrap)


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the embedded stack is always stopped in order."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _print_banner(stack: EmbeddedStack, *, ephemeral: bool, http_host: str, http_port: int) -> None:
    host = "127.0.0.1" if http_host in ("0.0.0.0", "", "::") else http_host
    base = f"http://{host}:{http_port}"
    http = (f"  Health            {base}/livez   {base}/readyz\n  Metrics           {base}/metrics\n"
            if http_port else "  Health, metrics   disabled (--http-port 0)\n")
    print(
        "\nEmbedded stack is up (development only)\n"
        f"  Kafka bootstrap   {stack.kafka_bootstrap}   (Tansu, memory-only; log {stack.kafka_log})\n"
        f"  Database URL      {stack.database_url}\n"
        f"  PostgreSQL data   {stack.pgdata}{' (deleted on exit)' if ephemeral else ''}\n"
        f"  psql              psql \"{stack.database_url.replace('+asyncpg', '')}\"\n"
        f"{http}"
        "Press Ctrl-C to stop.\n",
        file=sys.stderr,
        flush=True,
    )


def cmd_dev(args: argparse.Namespace) -> None:
    from service.devstack import PortInUse, embedded_stack

    _interrupt_on_sigterm()
    if args.jwt:
        os.environ.update(DEV_JWT)
    else:
        os.environ.setdefault("TICKETS_AUTH_MODE", "trust")  # development: explicit, and loud at start-up
    base = load_settings()
    http_port = base.http_port if args.http_port is None else args.http_port
    _require_http_port("dev", base, http_port, "pick another with --http-port (0 disables it).")  # before anything starts
    default_dir = tempfile.gettempdir() if args.ephemeral else base.data_dir
    data_dir = Path(args.data_dir or default_dir)
    _log.info("starting embedded PostgreSQL and Tansu broker", data_dir="ephemeral" if args.ephemeral else str(data_dir))
    try:
        with embedded_stack(data_dir, ephemeral=args.ephemeral, kafka_port=args.kafka_port) as stack:
            os.environ["TICKETS_DATABASE_URL"] = stack.database_url
            os.environ["TICKETS_KAFKA_BOOTSTRAP"] = stack.kafka_bootstrap
            _log.warning("the embedded broker is memory-only: topics and messages vanish when it stops")
            _print_banner(stack, ephemeral=args.ephemeral, http_host=base.http_host, http_port=http_port)
            _migrate(stack.database_url)
            _log.info("database schema is at head; starting the service")
            log_format = _dev_log_format()
            settings = load_settings(
                database_url=stack.database_url, kafka_bootstrap=stack.kafka_bootstrap, log_format=log_format,
                http_port=http_port,
            )
            if not args.no_refill:
                from service.ops.cli import refill_dev_broker

                refill_dev_broker(settings)
            try:
                _run_service(settings)
            finally:
                _interrupt_on_sigterm()  # asyncio.run resets the handlers it installed
                _log.info("stopping the broker, then PostgreSQL ...")
    except PortInUse as exc:
        sys.exit(f"tickets dev: {exc}; is another broker running? Pick a port with --kafka-port.")
    except KeyboardInterrupt:
        _log.info("interrupted")
    _log.info("embedded stack stopped")


def cmd_token(args: argparse.Namespace) -> None:
    import uuid

    from service.adapters.auth import mint_token

    settings = load_settings()
    role = "system" if args.gateway else args.role
    sub = uuid.UUID(args.sub or (DEV_GATEWAY if args.gateway else str(uuid.uuid4())))
    customer = uuid.UUID(args.customer_id) if args.customer_id else (uuid.uuid4() if role == "customer" else None)
    try:
        token = mint_token(Path(args.key).read_bytes(), sub=sub, role=role, customer_id=customer, kid=args.kid,
                           issuer=args.issuer or settings.auth_jwt_issuer or "tickets-dev",
                           audience=args.audience or settings.auth_jwt_audience, ttl_s=args.ttl)
    except (OSError, ValueError) as error:
        sys.exit(f"tickets token: {error}")
    print(f"actor {sub} role {role}" + (f" customer {customer}" if customer else "") + f", valid {args.ttl} s",
          file=sys.stderr)
    print(token)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickets", description="The ticket service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="run the service (settings from TICKETS_* variables)").set_defaults(
        handler=cmd_run
    )
    commands.add_parser("migrate", help="upgrade the database schema to head").set_defaults(handler=cmd_migrate)
    topics = commands.add_parser("topics", help="create every missing topic")
    topics.add_argument("--partitions", type=int, default=8)
    topics.add_argument("--replication-factor", type=int, default=1)
    topics.set_defaults(handler=cmd_topics)
    dev = commands.add_parser("dev", help="run the service on an embedded PostgreSQL and Kafka-compatible broker")
    dev.add_argument("--data-dir", help="where PostgreSQL keeps its data (default: TICKETS_DATA_DIR or .data)")
    dev.add_argument("--ephemeral", action="store_true", help="throw the database away on exit")
    dev.add_argument("--kafka-port", type=int, default=9092, help="broker port on 127.0.0.1 (default 9092)")
    dev.add_argument("--http-port", type=int, default=None,
                     help="port of /livez, /readyz and /metrics (default: TICKETS_HTTP_PORT or 8080; 0 disables)")
    dev.add_argument("--no-refill", action="store_true",
                     help="do not republish the stored events and results to the fresh broker at start")
    dev.add_argument("--jwt", action="store_true",
                     help="jwt mode with the development key pair (dev/keys); mint tokens with `tickets token`")
    dev.set_defaults(handler=cmd_dev)
    token = commands.add_parser("token", help="print a development actor token signed with a private key")
    token.add_argument("--role", default="agent", choices=["customer", "agent", "admin", "system"])
    token.add_argument("--sub", help="the actor's user id (default: a new UUID; the dev gateway for --gateway)")
    token.add_argument("--customer-id", help="the customer of a customer actor (default: a new UUID)")
    token.add_argument("--gateway", action="store_true", help="the development email-gateway account (role system)")
    token.add_argument("--key", default=str(_DEV_KEYS / "dev-private.pem"),
                       help="PEM private key (Ed25519, EC P-256 or RSA; default: the development key)")
    token.add_argument("--kid", default="tickets-dev-1", help="key id in the token header")
    token.add_argument("--issuer", help="iss claim (default: TICKETS_AUTH_JWT_ISSUER or tickets-dev)")
    token.add_argument("--audience", help="aud claim (default: TICKETS_AUTH_JWT_AUDIENCE)")
    token.add_argument("--ttl", type=int, default=900, help="lifetime in seconds (default 900)")
    token.set_defaults(handler=cmd_token)
    from service.ops.cli import add_commands

    add_commands(commands)  # dlq, outbox, events
    return parser


def _dev_log_format() -> str:
    """`tickets dev` talks to a developer: readable unless JSON is asked for."""
    return os.environ.get("TICKETS_LOG_FORMAT", "console")


def main(argv: Sequence[str] | None = None) -> None:
    """Every subcommand logs through the service's one set-up (JSON in JSON mode, the traceback of a
    failure as a field of one line); a failure exits with status 1."""
    args = build_parser().parse_args(argv)
    fmt = _dev_log_format() if args.command == "dev" else os.environ.get("TICKETS_LOG_FORMAT", "auto")
    configure_logging(fmt if fmt in ("auto", "json", "console") else "auto",
                      os.environ.get("TICKETS_LOG_LEVEL", "INFO"))
    try:  # a mistyped or invalid setting is one clear line, not a traceback
        load_settings()
    except UnknownSetting as exc:
        sys.exit(f"tickets: {exc}")
    except ValidationError as exc:
        sys.exit(f"tickets: {describe_invalid(exc)}")
    try:
        args.handler(args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as error:
        _log.exception("tickets failed", command=args.command, error=type(error).__name__)
        sys.exit(1)


if __name__ == "__main__":
    main()
