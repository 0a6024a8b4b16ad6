#!/usr/bin/env bash
# End-to-end overhead on 127.0.0.1: the instant mock upstream directly (a), the proxy with
# --no-observe (b), the proxy with the layer and the JSONL sink (c), non-streaming and a 100-event
# stream, same load, same run. With --litellm, also the LiteLLM proxy (installed from PyPI in a
# venv, one worker, a file-logging callback) against the same upstream.
#
#   scripts/bench-e2e.sh [--seconds 10] [--concurrency 32] [--litellm]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=10 concurrency=32 litellm=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --litellm) litellm=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --release --quiet --example bench_e2e --example proxy
bin=target/release/examples
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

up=$(port); plain=$(port); observed=$(port)
"$bin/bench_e2e" upstream --listen "127.0.0.1:$up" --events 100 > /dev/null & pids+=($!)
"$bin/proxy" --listen "127.0.0.1:$plain" --upstream "http://127.0.0.1:$up" --no-observe > /dev/null 2>&1 & pids+=($!)
"$bin/proxy" --listen "127.0.0.1:$observed" --upstream "http://127.0.0.1:$up" --jsonl "$work/calls.jsonl" > /dev/null 2>&1 & pids+=($!)
wait_port "$up"; wait_port "$plain"; wait_port "$observed"

targets=("a:upstream:$up" "b:proxy --no-observe:$plain" "c:proxy + layer + JSONL:$observed")
if [ "$litellm" = 1 ]; then
  venv="${LITELLM_VENV:-$HOME/.cache/llm-observability/litellm-venv}"
  if [ ! -x "$venv/bin/litellm" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'litellm[proxy]'
  fi
  lport=$(port)
  cat > "$work/file_logger.py" <<PY
import json
from litellm.integrations.custom_logger import CustomLogger

class FileLogger(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        with open("$work/litellm-calls.jsonl", "a") as f:
            f.write(json.dumps(kwargs.get("standard_logging_object"), default=str) + "\n")

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        await self.async_log_success_event(kwargs, response_obj, start_time, end_time)

handler = FileLogger()
PY
  cat > "$work/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$up/v1
      api_key: sk-bench
litellm_settings:
  callbacks: file_logger.handler
YAML
  # Loopback-only benchmark: LiteLLM's documented local-development switch for running without a master key.
  (cd "$work" && LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true exec "$venv/bin/litellm" --config litellm.yaml --host 127.0.0.1 --port "$lport" --num_workers 1 > "$work/litellm.log" 2>&1) & pids+=($!)
  wait_port "$lport"
  targets+=("d:LiteLLM proxy + file logger:$lport")
fi

results="$work/results.jsonl"
for stream in "" "--stream"; do
  for target in "${targets[@]}"; do
    IFS=: read -r key name p <<< "$target"
    "$bin/bench_e2e" load --url "http://127.0.0.1:$p/v1/chat/completions" --concurrency "$concurrency" \
      --seconds "$seconds" $stream --label "$key) $name" >> "$results"
  done
done

python3 - "$results" "$concurrency" "$seconds" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\nconcurrency {sys.argv[2]}, {sys.argv[3]} s per row, 127.0.0.1, {__import__('os').cpu_count()} cores")
for stream in (False, True):
    print("\n" + ("100-event SSE stream" if stream else "non-streaming chat"))
    print(f"{'target':<34} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'TTFB p50':>9} {'errors':>6}")
    group = [r for r in rows if r["stream"] == stream]
    by = {r["label"][0]: r for r in group}
    for r in group:
        print(f"{r['label']:<34} {r['rps']:>9.1f} {r['p50_ms']:>8.3f} {r['p90_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['ttfb_p50_ms']:>9.3f} {r['errors']:>6}")
    if "b" in by and "c" in by:
        b, c = by["b"], by["c"]
        print(f"(c)/(b) throughput {c['rps']/b['rps']:.3f}; added p50 {c['p50_ms']-b['p50_ms']:+.3f} ms, p99 {c['p99_ms']-b['p99_ms']:+.3f} ms; TTFB {c['ttfb_p50_ms']-b['ttfb_p50_ms']:+.3f} ms")
    if "d" in by and "c" in by:
        c, d = by["c"], by["d"]
        print(f"(c)/(d) throughput {c['rps']/max(d['rps'], 0.001):.1f}x; p99 {c['p99_ms']:.2f} vs {d['p99_ms']:.2f} ms")
PY
echo "JSONL lines written by (c): $(wc -l < "$work/calls.jsonl")"
