#!/usr/bin/env bash
# Fuzz the decoders with cargo-fuzz (libFuzzer + AddressSanitizer) for SECONDS per target
# (default 25). Seeds come from the recorded OpenAI and Anthropic traffic when it is present.
# The machine has only a stable toolchain; RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's -Z flags.
set -euo pipefail
seconds="${1:-25}"
cd "$(dirname "$0")/../fuzz"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

fixtures="${LLM_OBS_FIXTURES:-../../shared/fixtures/openai-recorded}"
providers="${LLM_OBS_PROVIDER_FIXTURES:-../../shared/fixtures/provider-recorded}"
mkdir -p corpus/response_decoder corpus/request_decoder corpus/anthropic_stream corpus/framers
if [ -d "$fixtures" ]; then
  python3 - "$fixtures" <<'PY'
import json, pathlib, sys, hashlib
root = pathlib.Path(sys.argv[1])
for path in root.rglob("_decoded/**/*.json"):
    for interaction in json.loads(path.read_text())["interactions"]:
        for target, body, prefix in (
            ("response_decoder", interaction["response"]["body"], bytes([0, 3, 7, 64, 200])),
            ("request_decoder", interaction["request"]["body"] or "", b""),
        ):
            data = prefix + body.encode()
            name = hashlib.sha1(data).hexdigest()
            (pathlib.Path("corpus") / target / name).write_bytes(data)
PY
fi

if [ -d "$providers" ]; then
  python3 - "$providers" <<'PY'
import json, pathlib, sys, hashlib
root = pathlib.Path(sys.argv[1])
for path in root.rglob("_decoded/**/*.json"):
    for interaction in json.loads(path.read_text())["interactions"]:
        if not interaction["request"]["uri"].split("?")[0].endswith("/v1/messages"):
            continue
        body = interaction["response"]["body"] or ""
        # [selector: 0 = SSE, 1 = JSON][3 cuts: 7, 64, 200][body]
        selector = 0 if body.lstrip().startswith(("event:", "data:")) else 1
        for target, data in (
            ("anthropic_stream", bytes([selector, 3, 7, 64, 200]) + body.encode()),
            ("request_decoder", (interaction["request"]["body"] or "").encode()),
        ):
            name = hashlib.sha1(data).hexdigest()
            (pathlib.Path("corpus") / target / name).write_bytes(data)
# Framer seeds: every recorded stream body, with the framing it uses
# ([selector: 0 SSE, 1 NDJSON, 2 JSON array, 3 event-stream][3 cuts][body]).
import base64
for path in root.rglob("_decoded/**/*.json"):
    for interaction in json.loads(path.read_text())["interactions"]:
        response = interaction["response"]
        raw = response["body"] or ""
        if response.get("body_form") == "base64":
            body, selector = base64.b64decode(raw), 3
        else:
            body = raw.encode()
            text = raw.lstrip()
            if text.startswith(("event:", "data:")):
                selector = 0
            elif text.startswith("["):
                selector = 2
            elif text.count("\n") > 1 and text.startswith("{"):
                selector = 1
            else:
                continue
        data = bytes([selector, 3, 7, 64, 200]) + body
        (pathlib.Path("corpus") / "framers" / hashlib.sha1(data).hexdigest()).write_bytes(data)
PY
fi

for target in response_decoder request_decoder anthropic_stream framers; do
  echo "== fuzz $target for ${seconds}s"
  log="corpus/$target.log"
  # cargo fuzz exits non-zero on a crash. Its status is kept apart from the filter below: a
  # `| grep ... || true` would report `true`'s status, and a crash would pass unnoticed.
  status=0
  cargo fuzz run "$target" --fuzz-dir . "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 > "$log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==[0-9]+==|SUMMARY|panicked|thread)" "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $target found a crash (exit $status); the input is in fuzz/artifacts/$target/" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
done
