"""docker-compose.yml wires every setting the service needs in a container, in the right order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "topics", "service")
LOOPBACK = ("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    pairs = raw.items() if isinstance(raw, dict) else (item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in pairs}


def setting(service: dict[str, Any], name: str) -> str:
    return env(service)[f"TICKETS_{name.upper()}"]


def loopback_defaults() -> set[str]:
    """Settings whose default only works when everything runs on one host."""
    return {
        name
        for name, field in Settings.model_fields.items()
        if isinstance(field.default, str) and any(host in field.default for host in LOOPBACK)
    }


def test_settings_that_need_wiring_are_known() -> None:
    assert {"database_url", "kafka_bootstrap"} <= loopback_defaults()


@pytest.mark.parametrize("name", ["service", "migrate"])
def test_every_loopback_setting_is_wired_away_from_loopback(compose: dict[str, Any], name: str) -> None:
    for field in loopback_defaults():
        value = setting(compose[name], field)
        assert not any(host in value for host in LOOPBACK), (name, field, value)


def test_service_binds_health_endpoint_on_all_interfaces_and_logs_json(compose: dict[str, Any]) -> None:
    assert setting(compose["service"], "http_host") == "0.0.0.0"
    assert setting(compose["service"], "log_format") == "json"


def test_only_real_settings_are_set(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        for key in env(compose[name]):
            assert key.removeprefix("TICKETS_").lower() in Settings.model_fields, (name, key)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_database_url_points_at_the_postgres_service(compose: dict[str, Any], name: str) -> None:
    url, postgres = make_url(setting(compose[name], "database_url")), env(compose["postgres"])
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port or 5432) == ("postgres", 5432)
    assert (url.username, url.password, url.database) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"],
    )  # fmt: skip


@pytest.mark.parametrize("name", APP_SERVICES)
def test_kafka_bootstrap_is_an_advertised_in_network_listener(compose: dict[str, Any], name: str) -> None:
    advertised = env(compose["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    addresses = {listener.split("://", 1)[1] for listener in advertised}
    bootstrap = setting(compose[name], "kafka_bootstrap")
    assert bootstrap.startswith("kafka:") and bootstrap in addresses


def test_service_starts_after_the_jobs_and_healthy_servers(compose: dict[str, Any]) -> None:
    conditions = {dep: spec["condition"] for dep, spec in compose["service"]["depends_on"].items()}
    assert conditions == {
        "migrate": "service_completed_successfully",
        "topics": "service_completed_successfully",
        "kafka": "service_healthy",
        "postgres": "service_healthy",
    }


@pytest.mark.parametrize(("job", "server"), [("migrate", "postgres"), ("topics", "kafka")])
def test_one_shot_jobs(compose: dict[str, Any], job: str, server: str) -> None:
    assert compose[job]["command"] == ["tickets", job]
    assert compose[job]["restart"] == "no"
    assert compose[job]["depends_on"][server]["condition"] == "service_healthy"


def test_servers_and_service_have_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("kafka", "postgres", "service"):
        assert compose[name]["healthcheck"]["test"], name
    probe = " ".join(compose["service"]["healthcheck"]["test"])
    assert f"localhost:{Settings.model_fields['http_port'].default}/readyz" in probe


def test_app_services_share_one_image_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    images = {(compose[n]["image"], str(compose[n]["build"])) for n in APP_SERVICES}
    assert len(images) == 1
    ((_, context),) = images
    dockerfile = (ROOT / context / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert any("./contracts" in line for line in installs) and any(" . " in f"{line} " for line in installs)
    assert not any("embedded" in line for line in installs)  # no embedded servers in the image
    assert 'CMD ["tickets", "run"]' in dockerfile
    assert compose["service"]["command"] == ["tickets", "run"]


def test_servers_are_pinned(compose: dict[str, Any]) -> None:
    assert compose["kafka"]["image"].startswith("apache/kafka:")
    assert compose["postgres"]["image"] == "postgres:16"
    assert not any(compose[n]["image"].endswith(":latest") for n in ("kafka", "postgres"))


def test_service_runs_jwt_mode_with_the_development_jwks(compose: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """docker compose runs jwt mode against the committed development JWKS (the public half only);
    `tickets token` mints tokens it accepts with its defaults."""
    import uuid

    from service.adapters.auth import ActorResolver, mint_token
    from service.cli import DEV_GATEWAY, DEV_JWT

    service = env(compose["service"])
    assert service["TICKETS_AUTH_MODE"] == "jwt"
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in compose["service"]["volumes"])
    assert mounts == {"./dev/keys/jwks.json": service["TICKETS_AUTH_JWKS"]}  # never the private key
    for name in ("TICKETS_AUTH_JWT_ISSUER", "TICKETS_AUTH_GATEWAY_ACCOUNTS"):
        assert service[name] == DEV_JWT[name]
    for name, value in service.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TICKETS_AUTH_JWKS", str(ROOT / "dev/keys/jwks.json"))  # where compose mounts it from
    resolver = ActorResolver.from_settings(Settings())
    assert resolver.gateway_accounts == {uuid.UUID(DEV_GATEWAY)}
    token = mint_token((ROOT / "dev/keys/dev-private.pem").read_bytes(), sub=uuid.UUID(DEV_GATEWAY), role="system",
                       kid="tickets-dev-1", issuer="tickets-dev", audience=Settings().auth_jwt_audience)
    actor = resolver.resolve(None, token)
    assert actor.user_id == uuid.UUID(DEV_GATEWAY) and resolver.may_ingest_email(actor)
