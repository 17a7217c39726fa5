#!/usr/bin/env bash
# `make bench` drives the HTTP benchmarks with wrk (Debian's package); install it when missing.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk
else
  echo "wrk not found and cannot be installed here (not root or no apt-get)" >&2
  exit 1
fi
