"""The repository stands alone: no document links outside it (no ../shared/, no web pages, no
absolute paths), and every relative link points at a file or folder that exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_AUTOLINK = re.compile(r"<((?:https?|ftp|file|mailto):[^>\s]+)>")
_BARE_URL = re.compile(r"(?<![(<\w])(?:https?|ftp|file)://[^\s)>\]`]+")
#: The service's own endpoints on the developer's machine are not links out of the repository.
_LOCAL = re.compile(r"^(?:https?|ftp)://(?:localhost|127\.0\.0\.1|\[::1\]|[\w.-]*\.(?:test|example|invalid))(?::\d+)?(?:/|$)")


def _documents() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.md")
                  if not any(part.startswith(".") or part in ("node_modules", "venv") for part in p.relative_to(ROOT).parts))


def _links(text: str) -> list[str]:
    code_free = re.sub(r"```.*?```", "", text, flags=re.S)
    return [*_INLINE.findall(code_free), *_REFERENCE.findall(code_free), *_AUTOLINK.findall(code_free),
            *_BARE_URL.findall(code_free)]


def _problem(document: Path, target: str) -> str | None:
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
        return None if _LOCAL.match(target) else "leaves the repository (a web or file address)"
    path = target.split("#", 1)[0].split("?", 1)[0]
    if not path:
        return None  # an anchor in the same document
    if path.startswith("/"):
        return "is an absolute path"
    resolved = (document.parent / path).resolve()
    if not resolved.is_relative_to(ROOT):
        return "leaves the repository"
    if not resolved.exists():
        return "points at nothing"
    return None


def test_there_are_documents_to_check() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _documents()}
    assert {"README.md", "docs/reference.md", "CHANGELOG.md"} <= names


@pytest.mark.parametrize("document", _documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_link_leaves_the_repository(document: Path) -> None:
    problems = [f"{target} {why}" for target in _links(document.read_text(encoding="utf-8"))
                if (why := _problem(document, target))]
    assert not problems, f"{document.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.mark.parametrize("text, bad", [
    ("see [the spec](../shared/SPEC.md)", True), ("[x]: https://pypi.org/project/x/", True),
    ("<https://example.com/>", True), ("read https://github.com/a/b now", True), ("[a](/etc/passwd)", True),
    ("[ok](docs/reference.md#5-statuses)", False), ("`curl http://127.0.0.1:8080/metrics`", False),
    ("[top](#using-it)", False),
])
def test_the_checker_itself(text: str, bad: bool) -> None:
    assert any(_problem(ROOT / "README.md", t) for t in _links(text)) is bad
