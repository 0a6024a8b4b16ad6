#!/usr/bin/env bash
# moto_server (PyPI `moto[server]`): an S3-compatible API on 127.0.0.1 for tests/archive.rs.
#   moto.sh install
#   moto.sh serve PORT WORKDIR   in-memory state; any access key is accepted; buckets are made by the test
source "$(dirname "$0")/lib.sh"

MOTO_SPEC='moto[server]==5.1.18'

case "${1:-}" in
install)
  python_venv moto "$MOTO_SPEC" >/dev/null
  ;;
serve)
  port=${2:?port}
  workdir=${3:?workdir}
  venv=$(python_venv moto "$MOTO_SPEC")
  cd "$workdir"
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >&2 &
  pid=$!
  wait_http "http://127.0.0.1:$port/moto-api/" 90 "$pid"
  serve_until_parent_exits "$pid"
  ;;
*)
  die "usage: $0 install | serve PORT WORKDIR"
  ;;
esac
