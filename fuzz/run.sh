#!/usr/bin/env bash
# Seeds the corpora and runs every fuzz target for SECONDS_EACH seconds (default 4200), all
# three at once under `nice -n 10`, each logging to records/<target>-<date>.log; then appends a
# summary line per target to records/summary.tsv (date, target, seconds, executions,
# oom/timeout/crash counts, wall and CPU time). Usage: fuzz/run.sh [SECONDS_EACH]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Seeds:
#   onnx_import  the bad-input fixtures (tests/bad-inputs, written by the `write_fixtures` test),
#                the ONNX node-test models under 64 KiB and the exported dynamic-conv variants
#                (both in ~/.cache/dync/fixtures when the tests have fetched them);
#   npy          the fixtures' .npy files and the cached inputs and references under 64 KiB;
#   compile_run  none (every byte string is a network; libFuzzer grows the corpus itself).
set -euo pipefail
TIMEFORMAT='time: wall %R s, user %U s, sys %S s'
secs=${1:-4200}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=${DYNC_CACHE:-$HOME/.cache/dync}/fixtures
cd "$here"
mkdir -p corpus/onnx_import corpus/npy corpus/compile_run records

if [ -z "$(ls -A corpus/onnx_import)" ]; then
  fixtures=$(mktemp -d)
  (cd "$root" && DYNC_FIXTURES_OUT="$fixtures" cargo test -q -p dync-tests --test bad_inputs \
    -- --ignored write_fixtures >/dev/null)
  find "$fixtures" -type f -size -256k ! -name '*.npy' -exec cp --backup=numbered -t corpus/onnx_import {} + || true
  find "$fixtures" -type f -name '*.npy' -size -256k -exec cp --backup=numbered -t corpus/npy {} + || true
  rm -rf "$fixtures"
  if [ -d "$cache" ]; then
    n=0
    while IFS= read -r f; do
      n=$((n + 1)); cp "$f" "corpus/onnx_import/seed-$n.onnx"
    done < <(find "$cache/onnx-node" "$cache/variants" -name '*.onnx' -size -128k 2>/dev/null)
    while IFS= read -r f; do
      n=$((n + 1)); cp "$f" "corpus/npy/seed-$n.npy"
    done < <(find "$cache" -name '*.npy' -size -64k 2>/dev/null)
  fi
fi

cargo +nightly fuzz build
date=$(date -u +%Y%m%d-%H%M)
pids=()
for t in onnx_import npy compile_run; do
  # Fork mode with one worker keeps fuzzing after a crash, timeout or OOM (each saved under
  # artifacts/<target>/). -rss_limit_mb: the importer's limits are set far below it in the
  # targets; -timeout: a single input taking longer is reported as a hang.
  # `time` (bash's keyword, children included) ends the log with `wall/user/sys` seconds.
  { time nice -n 10 cargo +nightly fuzz run "$t" -- -max_total_time="$secs" \
    -print_final_stats=1 -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -rss_limit_mb=2048 -timeout=60 -max_len=262144; } >"records/$t-$date.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for t in onnx_import npy compile_run; do
  log="records/$t-$date.log"
  # Fork mode's status lines: `#<executions>: cov: .. oom/timeout/crash: a/b/c time: ..`.
  last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1)
  execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
  fails=$(grep -oE 'oom/timeout/crash: [0-9]+/[0-9]+/[0-9]+' <<<"$last" | cut -d' ' -f2)
  times=$(grep -E '^time: wall' "$log" | tail -n 1 | sed 's/^time: //')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$date" "$t" "$secs" "${execs:-0}" "${fails:-?}" \
    "$times" >>records/summary.tsv
done
exit $status
