"""Another team can install ticket-contracts alone: its wheel holds only ticket_contracts, needs
only pydantic, and imports without the service being installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_contracts_wheel_stands_alone(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT / "contracts")], check=True)
    [wheel] = tmp_path.glob("ticket_contracts-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("ticket_contracts/", "ticket_contracts-")) for n in names), names
    metadata = next(n for n in names if n.endswith("METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist")]
    assert [r for r in requires if "extra ==" not in r] == ["Requires-Dist: pydantic<3,>=2.7"]

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True)
    probe = ("import sys, ticket_contracts, ticket_contracts.client; "
             "assert ticket_contracts.__file__.startswith(sys.argv[1]), ticket_contracts.__file__; "
             "assert not [m for m in sys.modules if m == 'service' or m.startswith('service.')]; "
             "print(len(ticket_contracts.schema.json_schemas()) if hasattr(ticket_contracts, 'schema') else 0)")
    # -I: isolated mode, so neither the repo nor the editable install is on the path.
    env_path = [p for p in sys.path if "site-packages" in p]
    code = f"import sys; sys.path[:0] = [{str(target)!r}] + {env_path!r}; " + probe
    subprocess.run([sys.executable, "-I", "-c", code, str(target)], check=True, cwd=tmp_path)
