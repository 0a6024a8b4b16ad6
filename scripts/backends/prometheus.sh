#!/usr/bin/env bash
# Prometheus (Debian package `prometheus`, which also ships `promtool`), for tests/metrics.rs.
#   prometheus.sh install             apt-get install prometheus (once)
#   prometheus.sh serve PORT WORKDIR  scrape $SCRAPE_TARGET (host:port, path /metrics) every second, storage
#                                     in WORKDIR, web API on 127.0.0.1:PORT; READY once /-/ready answers
set -euo pipefail
source "$(dirname "$0")/lib.sh"

install() {
  apt_install prometheus
  command -v prometheus >/dev/null || die "prometheus is not on PATH after installing it"
  command -v promtool >/dev/null || die "promtool is not on PATH after installing prometheus"
}

serve() {
  local port=$1 workdir=$2
  [[ -n "${SCRAPE_TARGET:-}" ]] || die "set SCRAPE_TARGET=host:port (the /metrics endpoint to scrape)"
  cat >"$workdir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: llm-observability
    metrics_path: /metrics
    static_configs:
      - targets: ["${SCRAPE_TARGET}"]
YAML
  prometheus \
    --config.file="$workdir/prometheus.yml" \
    --storage.tsdb.path="$workdir/data" \
    --web.listen-address="127.0.0.1:$port" \
    --log.level=warn >&2 &
  local pid=$!
  wait_http "http://127.0.0.1:$port/-/ready" 60 "$pid"
  serve_until_parent_exits "$pid"
}

case "${1:-}" in
  install) install ;;
  serve) serve "$2" "$3" ;;
  *) die "usage: $0 install | serve PORT WORKDIR" ;;
esac
