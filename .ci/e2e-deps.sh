#!/usr/bin/env bash
# What the e2e tests (tests/e2e/) need on a fresh machine: Debian's chromium, which
# Playwright drives via executable_path=/usr/bin/chromium (Playwright's own browser download
# does not work here), and a real ComfyUI with torch and two frontends, prepared once by
# tests/e2e/comfyui_setup.py in a cache dir (~/.cache/comfyfixer-e2e; a second run is instant).
# Preparing it before pytest also lets the unit tests that compare us with ComfyUI's own code
# run. Idempotent and quiet; installs nothing else globally.  COMFYFIXER_E2E=0 skips it all.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${COMFYFIXER_E2E:-1}" = "0" ]; then
    exit 0
fi
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
"$PYTHON" tests/e2e/comfyui_setup.py

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "e2e-deps: installing chromium (apt) ..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
