#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + integration + doc tests (incl. the README's),
# the real backends the sink tests start on 127.0.0.1 (scripts/backends/),
# and a bounded fuzzing run of the decoders (cargo-fuzz, installed if missing).
# Recorded-traffic conformance reads ../shared/fixtures/openai-recorded (or $LLM_OBS_FIXTURES).
set -euo pipefail
cd "$(dirname "$0")/.."
# One build from a clean checkout: incremental artifacts would only cost disk (gigabytes) and time.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features -- -D warnings
echo "== the core alone builds without warnings (no optional features)"
RUSTFLAGS="-D warnings" cargo check --no-default-features --quiet
echo "== docs as docs.rs builds them (--cfg docsrs, warnings denied)"
RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo doc --all-features --no-deps --quiet
echo "== real backends (cached venvs and Debian packages; see scripts/backends/)"
scripts/backends/install-all.sh
echo "== cargo test --all-features"
log=$(mktemp)
cargo test --all-features 2>&1 | tee "$log"
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
echo "== fuzz (bounded: 25 s per target)"
scripts/fuzz.sh 25

echo "fuzz: no crash in the bounded run"
echo "tests: ${passed} passed, 0 failed"
