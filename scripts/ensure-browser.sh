#!/usr/bin/env bash
# The console's browser tests drive Debian's Chromium (never a browser Playwright downloads).
# Install it when missing and we can (root with apt-get, as on CI); otherwise say so: the tests
# then skip locally and fail under CI (CI=1).
set -euo pipefail
browser="${GPUSUPPLY_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Chromium for the console's browser tests"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
else
  echo "Chromium not found and cannot be installed here (not root or no apt-get): the browser tests will be skipped"
fi
