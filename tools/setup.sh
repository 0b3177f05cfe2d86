#!/usr/bin/env bash
# Set up what the simulator and the tests need on a fresh Debian machine, idempotently:
# Debian's mosquitto (+ clients), a venv with the pinned Python packages. Source it:
#   . tools/setup.sh     -> PATH and PYTHONPATH point at the venv and the repo
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKPOINT_VENV:-$ROOT/.venv}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

have_mosquitto() { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; }
if ! have_mosquitto || ! command -v mosquitto_pub >/dev/null 2>&1; then
    echo "setup: installing Debian's mosquitto broker and clients" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV" >&2
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        # Debian ships venv's ensurepip separately.
        rm -rf "$VENV"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
fi
# Reinstall only when the dependency list changed.
stamp="$VENV/.checkpoint-deps"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python packages into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" - "$ROOT/pyproject.toml" > "$VENV/.requirements.txt" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))
PY
    "$VENV/bin/python" -m pip install -q -r "$VENV/.requirements.txt"
    echo "$want" > "$stamp"
fi

export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT/firmware:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
