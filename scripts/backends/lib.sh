#!/usr/bin/env bash
# Shared helpers for the real-backend scripts in this folder. Each backend script `NAME.sh` offers
#   NAME.sh install             install what the backend needs (idempotent, cached; safe to run twice at once)
#   NAME.sh serve PORT WORKDIR  run it on 127.0.0.1:PORT with its state in WORKDIR; prints READY once healthy,
#                               then stays in the foreground until killed (or until $LLM_OBS_TEST_PID exits)
# Tests drive them through tests/support/backend.rs; scripts/test.sh runs every `install` first.
set -euo pipefail

# Where cached virtualenvs live: survives between runs, never inside the repository.
BACKENDS_CACHE="${LLM_OBS_BACKENDS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-observability/backends}"
mkdir -p "$BACKENDS_CACHE"

die() {
  echo "backend: $*" >&2
  exit 1
}

# python_venv NAME PIP_SPEC... — create (once) the venv $BACKENDS_CACHE/NAME with exactly these specs
# installed; prints its path. A stamp of the specs makes a changed list reinstall.
python_venv() {
  local name=$1
  shift
  local venv="$BACKENDS_CACHE/venv-$name"
  local stamp="$venv/.llm-observability-specs"
  local wanted="$*"
  (
    flock 9
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
      exit 0
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv $venv failed"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2 ||
      die "pip install $* failed (PyPI must be reachable on a first run)"
    echo "$wanted" >"$stamp"
  ) 9>"$BACKENDS_CACHE/.venv-$name.lock"
  echo "$venv"
}

# apt_install PACKAGE... — install Debian packages that are missing (runs apt-get update once).
apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$package")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  (
    flock 9
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
      die "apt-get install ${missing[*]} failed"
  ) 9>"$BACKENDS_CACHE/.apt.lock"
}

# wait_http URL SECONDS [PID] — wait until URL answers with 2xx; fail if PID (the server) exits first.
wait_http() {
  local url=$1 seconds=$2 pid=${3:-}
  local deadline=$((SECONDS + seconds))
  until curl --silent --fail --max-time 2 --output /dev/null "$url"; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      die "the server exited before $url answered"
    fi
    ((SECONDS < deadline)) || die "$url did not answer within ${seconds}s"
    sleep 0.5
  done
}

# serve_until_parent_exits PID — print READY, then wait on the server PID; stop it (and this group) when the
# test process ($LLM_OBS_TEST_PID) is gone, so a killed or aborted test run leaves no server behind.
serve_until_parent_exits() {
  local pid=$1
  trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 0' TERM INT
  echo READY
  if [[ -n "${LLM_OBS_TEST_PID:-}" ]]; then
    while kill -0 "$pid" 2>/dev/null; do
      if ! kill -0 "$LLM_OBS_TEST_PID" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        break
      fi
      sleep 1
    done
  fi
  wait "$pid" 2>/dev/null || true
}
