#!/usr/bin/env bash
# The proof, long form: every reliability suite (R1-R7) at full size, then
# every benchmark (P1-P7). Writes the figures of docs/RELIABILITY.md and all
# of docs/BENCHMARKS.md.
#
#   tests/proof.sh               both (about an hour on 2 cores)
#   tests/proof.sh reliability   the suites only
#   tests/proof.sh bench         the benchmarks only (tests/bench/run-all.sh)
#
# `cargo test --workspace` (the README's test command, run by CI) runs the
# same suites in their short form. Sizes here can be changed through the
# same variables: MQ_R1_TRIALS, MQ_R2_SAVES, PROPTEST_CASES.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

reliability() {
  # The full sizes issue 7 names: 1,000 crash trials per API kind, 4 x 2,500
  # contended saves, and a long fuzz run.
  export MQ_R1_TRIALS=${MQ_R1_TRIALS:-1000}
  export MQ_R2_SAVES=${MQ_R2_SAVES:-2500}
  export PROPTEST_CASES=${PROPTEST_CASES:-20000}
  local suites=(reliability_crash reliability_contention worker_faults fuzz_inputs
                policy_hostile reliability_hostile_policy mcp_bad_input reliability_secrets)
  local log=target/proof-reliability.log
  mkdir -p target
  : > "$log"
  cargo test --release -p mem0-queue --no-run -q
  for t in "${suites[@]}"; do
    echo "== $t" | tee -a "$log"
    cargo test --release -q -p mem0-queue --test "$t" -- --nocapture 2>&1 | tee -a "$log"
  done
  local figures
  figures=$(grep -oE 'R[1-7] [a-z].*' "$log" | sort -s -k1,1)
  python3 - "$figures" <<'PY'
import re, sys, datetime, subprocess
figures = sys.argv[1]
path = "docs/RELIABILITY.md"
doc = open(path).read()
start, end = "<!-- figures:start -->", "<!-- figures:end -->"
cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
body = (f"{start}\nWritten by `tests/proof.sh reliability` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%MZ}, {cpu} cores, release build.\n\n"
        "```text\n" + figures + "\n```\n" + end)
doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: body, doc, flags=re.S)
open(path, "w").write(doc)
PY
  echo "wrote docs/RELIABILITY.md"
}

case "$what" in
  reliability) reliability ;;
  bench) tests/bench/run-all.sh ;;
  all) reliability; tests/bench/run-all.sh ;;
  *) echo "usage: tests/proof.sh [all|reliability|bench]" >&2; exit 2 ;;
esac
