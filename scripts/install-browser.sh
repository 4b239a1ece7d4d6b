#!/bin/sh
# Installs what tests/test_ui_browser.py needs: Chromium and its WebDriver from the Debian
# packages, and Selenium plus Streamlit into the current Python environment (simcore[ui,browser]).
# Usage: scripts/install-browser.sh [python]   (default: the python on PATH)
set -eu
PY=${1:-python}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
"$PY" -m pip install -q "streamlit>=1.30" "selenium>=4.15"
echo "chromium: $(chromium --version 2>/dev/null || echo missing); chromedriver: $(chromedriver --version 2>/dev/null || echo missing)"
