"""The deploy kit stays true: the alert rules are valid and fire as their tests say (promtool),
and the rules and the dashboard name only metrics the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "ticket-service.json"
#: promtool is Debian's `prometheus` package; scripts/test installs it. Locally without it these tests
#: fail rather than skip, so a green run always means the rules were checked.
PROMTOOL = shutil.which("promtool")
_METRIC = re.compile(r"\b((?:tickets|process|python)_[a-z_]+)\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is missing: apt-get install prometheus (scripts/test does it as root)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)


def test_promtool_checks_the_alert_rules_and_the_example_config() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_alerts_fire_as_their_promtool_unit_tests_say() -> None:
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _exported() -> set[str]:
    metrics = Metrics()
    text = generate_latest(metrics.registry).decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    suffixes = ("_total", "_bucket", "_count", "_sum", "_created", "_info")
    return names | {n + s for n in names for s in suffixes}


def test_the_alerts_cover_what_operators_must_hear_about_and_name_real_metrics() -> None:
    rules = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    named = {m for r in rules for m in _METRIC.findall(r["expr"])}
    assert named <= _exported(), named - _exported()
    for needed in ("tickets_outbox_oldest_unpublished_age_seconds", "tickets_dead_letters_total",
                   "tickets_consumer_lag", "tickets_relay_active", "tickets_auth_failures_total"):
        assert needed in named, needed


def test_the_dashboard_charts_only_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = {m for e in exprs for m in _METRIC.findall(e)}
    assert named <= _exported(), named - _exported()
    assert {"tickets_consumer_lag", "tickets_outbox_oldest_unpublished_age_seconds",
            "tickets_query_seconds_bucket", "tickets_relay_publish_seconds_bucket"} <= named
