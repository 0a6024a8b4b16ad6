#!/usr/bin/env bash
# W&B Weave's SQLite trace server (the last PyPI release that ships it, weave 0.51.59) behind
# Weave's generated FastAPI routes (weave_server.py), on 127.0.0.1.
#   weave.sh install             cached venv with weave and the web stack it needs
#   weave.sh serve PORT WORKDIR  serve it with its SQLite file in WORKDIR; READY once it answers
# WEAVE_SERVER_API_KEY (optional): require HTTP Basic auth `api:KEY`, as W&B's hosted server does.
source "$(dirname "$0")/lib.sh"

SPECS=(
  'weave==0.51.59'
  'fastapi==0.116.1'
  'starlette==0.47.3'
  'pydantic==2.14.4'
  'uvicorn==0.35.0'
  'emoji==2.14.1'
  'python-multipart==0.0.20'
)

case "${1:-}" in
  install)
    python_venv weave "${SPECS[@]}" >/dev/null
    ;;
  serve)
    port=${2:?port}
    workdir=${3:?workdir}
    venv=$(python_venv weave "${SPECS[@]}")
    "$venv/bin/python" "$(dirname "$0")/weave_server.py" "$port" "$workdir/weave.db" &
    pid=$!
    # /docs answers without auth, also when WEAVE_SERVER_API_KEY is set.
    wait_http "http://127.0.0.1:$port/docs" 90 "$pid"
    serve_until_parent_exits "$pid"
    ;;
  *)
    die "usage: weave.sh install | serve PORT WORKDIR"
    ;;
esac
