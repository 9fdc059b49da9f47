#!/usr/bin/env bash
# Runs every benchmark (P1-P7, the hooks' and the daemon's) in one go and writes docs/BENCHMARKS.md.
#   tests/bench/run-all.sh
# Each bench prints its own figures, measured in the same run, with ratios
# where it compares; this script only gathers them under one heading with
# the machine and the date. Release build; takes about 10 minutes on 2 cores.
# What follows the line `<!-- readings -->` in the old file (the hand-written
# reading of the figures) is kept as it is.
# BENCH_PROFILE=NAME benches under another cargo profile (default: `bench`,
# which inherits `release`), e.g. one that inherits `release` to try a change.
set -euo pipefail
profile=${BENCH_PROFILE:-bench}
cd "$(dirname "$0")/../.."
out=docs/BENCHMARKS.md
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  echo "# Benchmarks"
  echo
  echo "Written by \`tests/bench/run-all.sh\` on $(date -u +%Y-%m-%dT%H:%MZ), at commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo "Machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //' || echo unknown CPU)."
  echo "Cargo profile: \`$profile\`."
  echo "The machine is shared and noisy: compare the ratios measured within one run, not absolute times across runs."
  echo
  echo "| bench | what it measures |"
  echo "|---|---|"
  echo "| \`policy\` (P5, P6) | Cranelift compile of the default component; load from the compiled cache, cold vs warm; one decision in WASM on a fresh \`Store\` per call, on the runtime's reused store, and the same logic called natively, in the same run; \`.wasm\` and \`.cwasm\` sizes |"
  echo "| \`save\` (P1, P2) | \`mem0_save\` round trips through a real MCP stdio client at 100, 10,000 and 100,000 queued entries: p50, p99, p50(100k)/p50(100); the seed's JSON-file rewrite at 10,000 entries in the same run |"
  echo "| \`worker\` (P3, P4, P5) | draining 1,000 entries at 0 and 100 ms of server latency, concurrency 1, 4, 8; a run against a blackholed server with 1,000 queued; process start to first request with and without the compiled-policy cache |"
  echo "| \`daemon\` (issue 16) | \`mem0_save\` round trips over Streamable HTTP (the daemon) beside stdio (a \`serve\` window), alternated in one run: p50, p95, p99, ratio; save to delivery with the daemon running, for a window's saves and for HTTP saves, against the loopback test server (goal: p50 under 2 s) |"
  echo "| \`search\` (issue 5, P7) | local search over 100,000 entries, p50 and p99; the binary's size (as built and stripped); the RSS of an idle \`serve\`, first start and warm |"
  echo "| \`hook\` (issue 15) | the \`hook session-start\` process (recall) with 10,000 memories of the project, p50 and p99, Mem0 unset, down and up; \`hook session-end\` capturing a 50 MB transcript |"
  echo
  for bench in policy save worker daemon search hook; do
    echo "## \`cargo bench -p mem0-queue --bench $bench\`"
    echo
    echo '```text'
    cargo bench -q --profile "$profile" -p mem0-queue --bench "$bench" 2>/dev/null
    echo '```'
    echo
  done
  if [ -f "$out" ] && grep -q '^<!-- readings -->' "$out"; then
    sed -n '/^<!-- readings -->/,$p' "$out"
  fi
} > "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out"
