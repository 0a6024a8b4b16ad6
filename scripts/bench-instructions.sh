#!/usr/bin/env bash
# The layer's cost in CPU instructions per call, counted by valgrind's callgrind: repeatable on a
# noisy machine, where the req/s of scripts/bench-e2e.sh move by ±20% between runs.
#
# The proxy runs under callgrind with --no-observe (b) and with the layer and the JSONL sink (c)
# while the load client sends a fixed-concurrency load through it from outside valgrind, for
# non-streaming and 100-event streaming chat. Each row is (instructions of the run - instructions
# of an idle start and stop) / requests; for (c) the inclusive instructions of the layer's parts
# are listed as well. The instant mock upstream and the client run natively.
#
#   scripts/bench-instructions.sh [--seconds 10] [--concurrency 4]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=10 concurrency=4
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v valgrind > /dev/null || { echo "needs valgrind (Debian package valgrind)" >&2; exit 1; }

source scripts/bench-common.sh

up=$(port)
"$bench" upstream --listen "127.0.0.1:$up" --events 100 > /dev/null & pids+=($!)
wait_port "$up"

# run NAME LOAD_ARGS... : the proxy under callgrind, loaded with LOAD_ARGS ("idle": no load).
run() {
  local name="$1" mode="$2"; shift 2
  local args=(--no-observe)
  [ "$mode" = c ] && args=(--jsonl "$work/calls-$name.jsonl")
  local p; p=$(port)
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" \
    "$proxy" --listen "127.0.0.1:$p" --upstream "http://127.0.0.1:$up" "${args[@]}" > /dev/null 2> "$work/$name.log" &
  local vp=$!
  wait_port "$p"
  if [ "$1" = idle ]; then
    echo '{"requests": 0}' > "$work/$name.json"
  else
    "$bench" load --url "http://127.0.0.1:$p/v1/chat/completions" --concurrency "$concurrency" \
      --seconds "$seconds" "$@" > "$work/$name.json"
  fi
  kill -INT "$vp"; wait "$vp" || true
  callgrind_annotate --inclusive=yes --threshold=100 "$work/$name.out" > "$work/$name.txt" 2> /dev/null
}

for mode in b c; do
  run "idle-$mode" "$mode" idle
  run "json-$mode" "$mode" --label json
  run "sse-$mode" "$mode" --stream --label sse
done

python3 - "$work" "$concurrency" "$seconds" <<'PY'
import json, re, sys
work = sys.argv[1]

def inclusive(name):
    """Inclusive instructions by function name (the largest entry of each name)."""
    costs = {}
    for line in open(f"{work}/{name}.txt"):
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:[^:\s]+:)?(.+?)(?: \[.*\])?$", line)
        if m:
            n = int(m.group(1).replace(",", ""))
            costs[m.group(2)] = max(costs.get(m.group(2), 0), n)
    return costs

def total(name):
    return inclusive(name).get("PROGRAM TOTALS", 0)

parts = [
    ("request body decoded", "llm_observability::call::RequestCapture::end"),
    ("call opened (id, clocks, span)", "llm_observability::call::Observer::start"),
    ("response frames fed to the decoder", "llm_observability::call::InFlightCall::response_frame"),
    ("call finished (response decode, payload, enqueue)", "llm_observability::call::InFlightCall::finish"),
    ("sink worker (JSONL lines, file writes)", "llm_observability::sink::dispatcher::Worker::run::{{closure}}"),
]
print(f"\ninstructions per call (callgrind), concurrency {sys.argv[2]}, {sys.argv[3]} s per row")
for kind, label in (("json", "non-streaming chat"), ("sse", "100-event SSE stream")):
    per = {}
    for mode in "bc":
        requests = json.load(open(f"{work}/{kind}-{mode}.json"))["requests"]
        per[mode] = (total(f"{kind}-{mode}") - total(f"idle-{mode}")) / max(requests, 1)
    print(f"\n{label}")
    print(f"  (b) proxy --no-observe        {per['b']:>12,.0f}")
    print(f"  (c) proxy + layer + JSONL     {per['c']:>12,.0f}   (c)/(b) = {per['c'] / per['b']:.2f}")
    costs = inclusive(f"{kind}-c")
    requests = json.load(open(f"{work}/{kind}-c.json"))["requests"]
    for what, function in parts:
        print(f"      {what:<50} {costs.get(function, 0) / max(requests, 1):>10,.0f}")
PY
