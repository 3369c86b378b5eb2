#!/usr/bin/env bash
# System packages the e2e tests (tests/e2e/) need on a fresh machine: Debian's chromium,
# which Playwright drives via executable_path=/usr/bin/chromium (Playwright's own browser
# download does not work here).  Idempotent and quiet; installs nothing else globally.
# ComfyUI, torch and the frontends are prepared by tests/e2e/comfyui_setup.py in a cache dir.
set -euo pipefail

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
