"""The README's promises stay true: its configuration table and CI's test command."""

from __future__ import annotations

from pathlib import Path

from service.settings import markdown_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_table_matches_the_settings() -> None:
    assert markdown_table() in (ROOT / "README.md").read_text(), "regenerate with: python -m service.settings"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test    # run the whole test suite" in readme
    assert "scripts/test" in ci.split("exec", 1)[1]
