#!/usr/bin/env bash
# MLflow tracking server (PyPI mlflow 3.17.2) with a SQLite store, for the MLflow sink tests.
#   mlflow.sh install             cached venv with mlflow
#   mlflow.sh serve PORT WORKDIR  `mlflow server` on 127.0.0.1:PORT, one worker, job execution off,
#                                 SQLite store and artifacts in WORKDIR; READY once /health answers
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MLFLOW_SPEC='mlflow==3.17.2'

case "${1:-}" in
  install)
    python_venv mlflow "$MLFLOW_SPEC" >/dev/null
    ;;
  serve)
    port=${2:?usage: mlflow.sh serve PORT WORKDIR}
    workdir=${3:?usage: mlflow.sh serve PORT WORKDIR}
    venv=$(python_venv mlflow "$MLFLOW_SPEC")
    mkdir -p "$workdir/artifacts"
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$venv/bin/mlflow" server \
      --host 127.0.0.1 --port "$port" --workers 1 \
      --backend-store-uri "sqlite:///$workdir/mlflow.db" \
      --artifacts-destination "$workdir/artifacts" &
    pid=$!
    wait_http "http://127.0.0.1:$port/health" 180 "$pid"
    serve_until_parent_exits "$pid"
    ;;
  *)
    die "usage: mlflow.sh install | serve PORT WORKDIR"
    ;;
esac
