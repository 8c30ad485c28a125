#!/bin/sh
# Install headless Chromium from Debian's packages for the HTML report test (tests/test_eval_report.py).
# Idempotent: does nothing when chromium is already on PATH. Needs root (or sudo) and the Debian registry.
# Exit status 0 when chromium is available afterwards, 1 otherwise (the test then skips with this reason).
set -u
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
  echo "setup_chromium: not root and no sudo; install chromium yourself (apt-get install -y chromium)" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1; then
  echo "setup_chromium: apt-get install chromium failed" >&2; exit 1
fi
command -v chromium >/dev/null 2>&1
