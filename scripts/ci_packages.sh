#!/usr/bin/env bash
# System packages the test suite needs beyond Python: chromium, for tests/test_tui_web.py
# (the TUI served by `tunelab tui --web`, driven by Playwright in a headless browser).
#
# Idempotent: installs only what is missing, from the Debian archive. Needs root (or sudo).
# Playwright's own browser download is never used (`playwright install` is not called).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
chromium --version
