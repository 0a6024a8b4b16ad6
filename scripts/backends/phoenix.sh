#!/usr/bin/env bash
# Arize Phoenix (PyPI `arize-phoenix`), for the `phoenix` preset's tests.
#   phoenix.sh install             cached venv with the pinned Phoenix
#   phoenix.sh serve PORT WORKDIR  `phoenix serve` on 127.0.0.1:PORT, state in WORKDIR
#
# Phoenix also opens an OTLP gRPC port, and binds it on every interface whatever PHOENIX_HOST
# says. So `serve` refuses to run outside a private network namespace (loopback only): the test
# re-executes itself under `unshare --net` and starts Phoenix from there (see tests/phoenix.rs).
# Set LLM_OBS_PHOENIX_ALLOW_HOST_NETWORK=1 to run it on the host's network anyway.
source "$(dirname "$0")/lib.sh"

PHOENIX_VERSION=20.26.1

venv() {
  python_venv phoenix "arize-phoenix==$PHOENIX_VERSION"
}

# Only the loopback interface (and it is up): the namespace `unshare --net` gives.
in_private_netns() {
  # netlink, not /sys/class/net: sysfs still shows the host's interfaces after unshare.
  [[ "$(ip -o link show | awk -F': ' '{print $2}')" == "lo" ]]
}

case "${1:-}" in
install)
  venv >/dev/null
  ;;
serve)
  port=${2:?usage: phoenix.sh serve PORT WORKDIR}
  workdir=${3:?usage: phoenix.sh serve PORT WORKDIR}
  if ! in_private_netns && [[ "${LLM_OBS_PHOENIX_ALLOW_HOST_NETWORK:-}" != 1 ]]; then
    die "Phoenix binds its gRPC port on all interfaces: run it inside 'unshare --net' (interfaces here: $(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' '))"
  fi
  venv_dir=$(venv)
  # A gRPC port next to the HTTP one; inside the namespace nothing else listens.
  grpc_port=${LLM_OBS_PHOENIX_GRPC_PORT:-$((port == 65535 ? port - 1 : port + 1))}
  mkdir -p "$workdir/phoenix"
  PHOENIX_HOST=127.0.0.1 \
    PHOENIX_PORT="$port" \
    PHOENIX_GRPC_PORT="$grpc_port" \
    PHOENIX_WORKING_DIR="$workdir/phoenix" \
    PHOENIX_TELEMETRY_ENABLED=false \
    DO_NOT_TRACK=1 \
    "$venv_dir/bin/phoenix" serve >&2 &
  pid=$!
  wait_http "http://127.0.0.1:$port/healthz" 180 "$pid"
  serve_until_parent_exits "$pid"
  ;;
*)
  die "usage: phoenix.sh install | serve PORT WORKDIR"
  ;;
esac
