#!/usr/bin/env bash
# Creates .venv with everything the project needs (idempotent: a second run only checks), and puts
# this checkout on that venv's import path, so `.venv/bin/python tools/X.py` finds `models`, `datasets`
# and `util` from any folder. Only this project's own .venv gets that path: nothing is installed into
# another environment (the top-level names would collide there, e.g. with Hugging Face `datasets`).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -r requirements.txt
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n' "$PWD" > "$site/motrv2_tfsasm_checkout.pth"
