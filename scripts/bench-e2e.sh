#!/usr/bin/env bash
# End-to-end overhead on 127.0.0.1: the instant mock upstream directly (a), the proxy with
# --no-observe (b), the proxy with the layer and the JSONL sink (c), non-streaming and a 100-event
# stream, same load, same run. With --litellm, also the LiteLLM proxy (installed from PyPI in a
# venv, one worker, a file-logging callback) against the same upstream.
#
# The targets take turns for --rounds rounds (this machine is noisy: a quiet spell must not favour
# one of them); each row is the median over the rounds, and (c)/(b) is the median of the
# per-round ratios, with their range.
#
#   scripts/bench-e2e.sh [--seconds 10] [--concurrency 32] [--rounds 3] [--litellm]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=10 concurrency=32 rounds=3 litellm=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --litellm) litellm=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

source scripts/bench-common.sh

up=$(port); plain=$(port); observed=$(port)
"$bench" upstream --listen "127.0.0.1:$up" --events 100 > /dev/null & pids+=($!)
"$proxy" --listen "127.0.0.1:$plain" --upstream "http://127.0.0.1:$up" --no-observe > /dev/null 2>&1 & pids+=($!)
"$proxy" --listen "127.0.0.1:$observed" --upstream "http://127.0.0.1:$up" --jsonl "$work/calls.jsonl" > /dev/null 2>&1 & pids+=($!)
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

for round in $(seq 1 "$rounds"); do
  for stream in "" "--stream"; do
    for target in "${targets[@]}"; do
      IFS=: read -r key name p <<< "$target"
      "$bench" load --url "http://127.0.0.1:$p/v1/chat/completions" --concurrency "$concurrency" \
        --seconds "$seconds" $stream --label "$key) $name" >> "$work/round-$round.jsonl"
    done
  done
done

python3 - "$work" "$rounds" "$concurrency" "$seconds" <<'PY'
import json, os, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
runs = [[json.loads(l) for l in open(f"{work}/round-{r}.jsonl")] for r in range(1, rounds + 1)]
med = statistics.median
print(f"\nconcurrency {sys.argv[3]}, {sys.argv[4]} s per row, {rounds} rounds (medians), 127.0.0.1, {os.cpu_count()} cores")
for stream in (False, True):
    print("\n" + ("100-event SSE stream" if stream else "non-streaming chat"))
    print(f"{'target':<34} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'TTFB p50':>9} {'errors':>6}")
    per_round = [{r["label"][0]: r for r in run if r["stream"] == stream} for run in runs]
    for key in sorted(per_round[0]):
        rows = [by[key] for by in per_round]
        m = lambda field: med(r[field] for r in rows)
        print(f"{rows[0]['label']:<34} {m('rps'):>9.1f} {m('p50_ms'):>8.3f} {m('p90_ms'):>8.3f} {m('p99_ms'):>8.3f} {m('ttfb_p50_ms'):>9.3f} {sum(r['errors'] for r in rows):>6}")
    if all("b" in by and "c" in by for by in per_round):
        ratio = [by["c"]["rps"] / by["b"]["rps"] for by in per_round]
        p99 = [by["c"]["p99_ms"] - by["b"]["p99_ms"] for by in per_round]
        ttfb = [by["c"]["ttfb_p50_ms"] - by["b"]["ttfb_p50_ms"] for by in per_round]
        print(f"(c)/(b) throughput {med(ratio):.3f} (rounds {min(ratio):.3f}..{max(ratio):.3f}); added p99 {med(p99):+.3f} ms; TTFB {med(ttfb):+.3f} ms")
    if all("d" in by and "c" in by for by in per_round):
        ratio = [by["c"]["rps"] / max(by["d"]["rps"], 0.001) for by in per_round]
        print(f"(c)/(d) throughput {med(ratio):.1f}x; p99 {med(by['c']['p99_ms'] for by in per_round):.2f} vs {med(by['d']['p99_ms'] for by in per_round):.2f} ms")
PY
echo "JSONL lines written by (c): $(wc -l < "$work/calls.jsonl")"
