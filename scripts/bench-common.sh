# Shared by the end-to-end benchmark scripts (sourced, not run): builds the release proxy binary
# and the bench_e2e example, and gives their paths ($proxy, $bench), a scratch directory,
# background processes stopped on exit, and loopback port helpers.

cargo build --release --quiet --features proxy --bin llm-observability-proxy --example bench_e2e
proxy="${CARGO_TARGET_DIR:-target}/release/llm-observability-proxy"
bench="${CARGO_TARGET_DIR:-target}/release/examples/bench_e2e"
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# A free port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits (up to 60 s) until something listens on 127.0.0.1:$1.
wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
