"""Pinned deploys: requirements.lock pins every production dependency with hashes, the Docker image
installs from it with --require-hashes, and the CHANGELOG has an upgrade note for every migration."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, tuple[str, int]]:
    """name → (version, number of hashes) of every entry of requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    pins: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if match := re.match(r"([A-Za-z0-9._-]+)==(\S+)", block):
            pins[canonicalize_name(match[1])] = (match[2], block.count("--hash=sha256:"))
    return pins


def _production_requirements() -> list[Requirement]:
    wanted = []
    for path, extras in (("pyproject.toml", ()), ("contracts/pyproject.toml", ("client",))):
        project = tomllib.loads((ROOT / path).read_text())["project"]
        wanted += [Requirement(d) for d in project["dependencies"]]
        wanted += [Requirement(d) for extra in extras for d in project["optional-dependencies"][extra]]
    return [r for r in wanted if canonicalize_name(r.name) != "ticket-contracts"]


def test_every_production_dependency_is_pinned_within_its_range_with_hashes() -> None:
    pins = _pins()
    assert pins, "requirements.lock is empty"
    for requirement in _production_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run scripts/lock"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"requirements.lock pins {name}=={version}, outside {requirement}: run scripts/lock"
    assert all(hashes for _, hashes in pins.values()), "every pin has its hashes"
    assert "setuptools" in pins, "the build backend of our own packages is locked too"


def test_the_image_installs_from_the_lock_and_resolves_nothing_else() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install --require-hashes .*-r requirements\.lock", dockerfile)
    ours = [line for line in dockerfile.splitlines() if "pip install" in line and "requirements.lock" not in line]
    assert ours and all("--no-deps" in line and "--no-build-isolation" in line for line in ours), ours


def test_every_migration_has_an_upgrade_note_in_the_changelog() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    notes = "\n".join(part.split("\n## ", 1)[0] for part in changelog.split("### Migrations")[1:])
    for migration in sorted((ROOT / "migrations" / "versions").glob("*.py")):
        revision = re.search(r"^revision: str = ['\"](\w+)['\"]", migration.read_text(), re.M)
        if revision is None:
            continue  # __init__.py
        assert f"`{revision[1]}`" in notes and migration.name in notes, \
            f"CHANGELOG.md has no upgrade note for {migration.name} (see its 'How to add an entry')"
