# Sourced by scripts/dev and scripts/test: make .venv exist and match pyproject.toml.
# Creates .venv with Python >= 3.11 if missing, and (re)installs the service, its contracts and the
# dev tooling whenever a pyproject.toml changed since the last install (stamp file in .venv).

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -x .venv/bin/python ]]; then
    python=""
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            python="$candidate"
            break
        fi
    done
    if [[ -z "$python" ]]; then
        echo "error: Python 3.11 or newer is required (tried python3.11 ... python3)" >&2
        exit 1
    fi
    echo "creating .venv with $("$python" --version)" >&2
    "$python" -m venv .venv
fi

stamp=.venv/.tickets-installed
wanted="$(.venv/bin/python -c 'import hashlib, pathlib
print(hashlib.sha256(b"".join(pathlib.Path(p).read_bytes() for p in ("pyproject.toml", "contracts/pyproject.toml"))).hexdigest())')"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    echo "installing the service and its dependencies into .venv ..." >&2
    if ! .venv/bin/python -m pip install --disable-pip-version-check -e ./contracts -e ".[embedded,dev]" \
        >.venv/pip-install.log 2>&1; then
        cat .venv/pip-install.log >&2
        echo "error: installing into .venv failed (log above, also in .venv/pip-install.log)" >&2
        exit 1
    fi
    echo "$wanted" > "$stamp"
fi
