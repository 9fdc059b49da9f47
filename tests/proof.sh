#!/usr/bin/env bash
# The proof, long form: every reliability suite (R1-R7) at full size, then
# every benchmark (P1-P7). Writes the figures of docs/RELIABILITY.md and all
# of docs/BENCHMARKS.md.
#
#   tests/proof.sh               both (about an hour on 2 cores)
#   tests/proof.sh reliability   the suites only
#   tests/proof.sh bench         the benchmarks only (tests/bench/run-all.sh)
#   tests/proof.sh figures       rewrite the figures from the last suites' log
#
# `cargo test --workspace` (the README's test command, run by CI) runs the
# same suites in their short form. Sizes here can be changed through the
# same variables: MQ_R1_TRIALS, MQ_R2_SAVES, PROPTEST_CASES.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

# On a fresh clone: the policy components and the test fixtures are built
# for this target (idempotent, and quick when it is there).
if command -v rustup >/dev/null; then
  rustup target add wasm32-wasip2 >/dev/null 2>&1 || echo "proof.sh: rustup target add wasm32-wasip2 failed" >&2
fi

# Rewrites the figures of docs/RELIABILITY.md from the suites' log: a table
# of the checker's counts per suite, then every suite's line as printed.
figures() {
  python3 - target/proof-reliability.log <<'PY'
import re, sys, datetime, os, subprocess
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
lines = [m.group(0) for m in re.finditer(r"R[1-8] [a-z][^\n]*", open(sys.argv[1]).read())]
lines.sort(key=lambda l: l[:2])
rows = []
for l in lines:
    c = dict(re.findall(r"(acknowledged|indeterminate|delivered|queued|lost|duplicated|unexpected)=(\d+)", l))
    # One row per suite: R8's per-history lines stay in the text below.
    if "lost" in c and not re.search(r"history \d+:", l):
        label = re.match(r"(.*?): (?=[\w ]+=)", l)
        label = label.group(1) if label else l.split(": ")[0]
        t = (re.search(r"trials=(\d+)", l) or re.search(r"(\d+) tool calls", l)
             or re.search(r"processes=(\d+ x saves=\d+)", l)
             or re.search(r"histories=(\d+ x \d+ operations|\d+)", l))
        trials = t.group(1).replace(" saves=", " ") if t else ""
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            label, trials, c.get("acknowledged", ""),
            c.get("indeterminate", ""), c.get("delivered", ""), c["lost"], c["duplicated"], c.get("unexpected", "")))
path = "docs/RELIABILITY.md"
doc = open(path).read()
start, end = "<!-- figures:start -->", "<!-- figures:end -->"
body = (f"{start}\nWritten by `tests/proof.sh reliability` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%MZ}, {os.cpu_count()} cores, optimised build (profile `proof`), at commit {commit}.\n\n"
        "| suite | trials | acknowledged | indeterminate | delivered | lost | duplicated | unexpected |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
        "\n\nEach suite's own line:\n\n```text\n" + "\n".join(lines) + "\n```\n" + end)
doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: body, doc, flags=re.S)
open(path, "w").write(doc)
PY
  echo "wrote docs/RELIABILITY.md"
}

reliability() {
  # The full sizes issue 7 names: 1,000 crash trials per API kind, 4 x 2,500
  # contended saves, and a long fuzz run.
  export MQ_R1_TRIALS=${MQ_R1_TRIALS:-1000}
  export MQ_R2_SAVES=${MQ_R2_SAVES:-2500}
  export PROPTEST_CASES=${PROPTEST_CASES:-20000}
  # R8: 20 histories of 3 clients x 200 operations (12,000 operations).
  export MQ_R8_HISTORIES=${MQ_R8_HISTORIES:-20}
  export MQ_R8_OPS=${MQ_R8_OPS:-200}
  local suites=(reliability_crash reliability_contention worker_faults network_path reliability_lifecycle fuzz_inputs
                policy_hostile reliability_hostile_policy mcp_bad_input reliability_secrets)
  local log=target/proof-reliability.log
  mkdir -p target
  : > "$log"
  # Only the suites, under the `proof` profile (release without fat LTO;
  # see Cargo.toml).
  local tests=()
  for t in "${suites[@]}"; do tests+=(--test "$t"); done
  cargo test --profile proof -p mem0-queue --no-run -q "${tests[@]}"
  for t in "${suites[@]}"; do
    echo "== $t" | tee -a "$log"
    cargo test --profile proof -q -p mem0-queue --test "$t" -- --nocapture 2>&1 | tee -a "$log"
  done
  figures
}

case "$what" in
  reliability) reliability ;;
  figures) figures ;;
  bench) tests/bench/run-all.sh ;;
  all) reliability; tests/bench/run-all.sh ;;
  *) echo "usage: tests/proof.sh [all|reliability|bench|figures]" >&2; exit 2 ;;
esac
