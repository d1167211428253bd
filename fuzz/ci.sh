#!/usr/bin/env bash
# Bounded fuzzing for CI: builds every fuzz target once, then runs each for
# FUZZ_SECS seconds (default 15) from its kept corpus, with a 512 MB memory limit.
# Fails on any crash, leak, timeout or out-of-memory (libFuzzer's input lands in
# fuzz/artifacts/<target>/, which git ignores); prints each target's executions.
# Needs rustup's nightly toolchain; installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECS:-15}

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "error: the nightly toolchain is missing; run: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The instrumented build is kept outside the checkout, so that CI on the same machine
# rebuilds only fleetpoll itself (a first build from nothing takes 10-18 minutes on
# 2 cores).
export CARGO_TARGET_DIR="${FLEETPOLL_FUZZ_TARGET_DIR:-$HOME/.cache/fleetpoll/fuzz-target}"
started=$(date +%s)
cargo +nightly fuzz build
built=$(date +%s)
echo "== fuzz build: $((built - started)) s"

# New inputs go to a scratch corpus; the kept one (fuzz/corpus/<target>) is only read.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$work/$target"
  log="$work/$target.log"
  if cargo +nightly fuzz run "$target" "$work/$target" "corpus/$target" -- \
      -max_total_time="$secs" -rss_limit_mb=512 -print_final_stats=1 >"$log" 2>&1; then
    execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
    rss=$(awk '/stat::peak_rss_mb/ { print $2 }' "$log")
    echo "$target: ${execs:-?} executions in ${secs} s, peak RSS ${rss:-?} MB, no crash"
  else
    echo "$target: FAILED (log below; the input is in fuzz/artifacts/$target/)" >&2
    tail -n 60 "$log" >&2
    status=1
  fi
done
echo "== fuzzing: $(($(date +%s) - started)) s in all"
exit "$status"
