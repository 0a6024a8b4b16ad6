#!/usr/bin/env bash
# Installs every real backend the test suite starts (cached venvs, Debian packages), so the
# first test that needs one does not spend its time in pip or apt. Tests install on demand too.
set -euo pipefail
cd "$(dirname "$0")"
for script in *.sh; do
  case "$script" in lib.sh | install-all.sh) continue ;; esac
  echo "== backend: ${script%.sh}"
  bash "$script" install
done
