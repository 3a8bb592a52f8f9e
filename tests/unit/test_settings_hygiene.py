"""Settings hygiene: a mistyped variable, an invalid value or a busy HTTP port stops start-up with one
clear line, before anything is started; secrets never show in the settings' repr."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings, UnknownSetting, check_environment, load_settings

TICKETS = str(Path(sys.executable).with_name("tickets"))


@pytest.mark.parametrize(("variable", "closest"), [
    ("TICKETS_KAFKA_BOOTSTRAP_SERVERS", "TICKETS_KAFKA_BOOTSTRAP"),
    ("TICKETS_DATABASE_URI", "TICKETS_DATABASE_URL"),
    ("tickets_http_prot", "TICKETS_HTTP_PORT"),
    ("TICKETS_AUTH_JWT_SECRETS", "TICKETS_AUTH_JWT_SECRET"),
])
def test_an_unknown_variable_names_the_closest_setting(variable: str, closest: str) -> None:
    with pytest.raises(UnknownSetting, match=f"unknown setting {variable}: did you mean {closest}\\?"):
        check_environment({variable: "x", "TICKETS_HTTP_PORT": "1"})


def test_a_variable_like_no_setting_points_to_the_list() -> None:
    with pytest.raises(UnknownSetting, match="python -m service.settings"):
        check_environment({"TICKETS_ZZZZZZZZ": "1"})


def test_settings_tooling_and_foreign_variables_pass() -> None:
    check_environment({"TICKETS_HTTP_PORT": "1", "TICKETS_TEST_DATABASE_URL": "x", "TICKETS_BENCH_KAFKA": "x",
                       "PATH": "/bin", "TICKETSX": "1"})


def test_load_settings_refuses_an_unknown_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    with pytest.raises(UnknownSetting):
        load_settings()


def test_the_jwt_secret_is_a_secret() -> None:
    settings = Settings(auth_jwt_secret="a-very-secret-value-of-32-bytes!!")
    assert settings.auth_jwt_secret.get_secret_value() == "a-very-secret-value-of-32-bytes!!"
    assert "a-very-secret" not in repr(settings) and "a-very-secret" not in str(settings.model_dump())


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _tickets(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("TICKETS_")}
    return subprocess.run([TICKETS, *args], env=clean | env, capture_output=True, text=True, timeout=60)


def test_run_with_a_busy_http_port_is_one_line(busy_port: int) -> None:
    done = _tickets("run", TICKETS_HTTP_PORT=str(busy_port), TICKETS_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"tickets run: the HTTP port (health and metrics) 127.0.0.1:{busy_port} is already in use "
        "(Address already in use); pick another with TICKETS_HTTP_PORT (0 disables it)."]


def test_dev_with_a_busy_http_port_stops_before_postgresql_and_the_broker(busy_port: int, tmp_path: Path) -> None:
    done = _tickets("dev", "--data-dir", str(tmp_path), "--http-port", str(busy_port))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert f"127.0.0.1:{busy_port} is already in use" in done.stderr and "--http-port" in done.stderr
    assert list(tmp_path.iterdir()) == [], "nothing was started"


def test_a_mistyped_variable_stops_the_cli_with_one_line() -> None:
    done = _tickets("run", TICKETS_KAFKA_BOOTSTRAP_SERVERS="kafka:9092")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "tickets: unknown setting TICKETS_KAFKA_BOOTSTRAP_SERVERS: did you mean TICKETS_KAFKA_BOOTSTRAP?"]


def test_an_invalid_value_stops_the_cli_with_one_line_without_the_value() -> None:
    done = _tickets("migrate", TICKETS_HTTP_PORT="not-a-port-SECRET")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "TICKETS_HTTP_PORT" in done.stderr and "SECRET" not in done.stderr


def test_the_dev_banner_prints_the_health_and_metrics_urls(capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli import _print_banner
    from service.devstack import EmbeddedStack

    stack = EmbeddedStack("postgresql+asyncpg://postgres@/tickets?host=/tmp", "127.0.0.1:19092", Path("/d"), Path("/l"))
    _print_banner(stack, ephemeral=True, http_host="0.0.0.0", http_port=19280)
    banner = capsys.readouterr().err
    assert "http://127.0.0.1:19280/livez" in banner and "http://127.0.0.1:19280/readyz" in banner
    assert "http://127.0.0.1:19280/metrics" in banner
    _print_banner(stack, ephemeral=True, http_host="127.0.0.1", http_port=0)
    assert "disabled" in capsys.readouterr().err
