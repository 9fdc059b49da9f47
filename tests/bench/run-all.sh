#!/usr/bin/env bash
# Runs every benchmark (P1-P7) in one go and writes docs/BENCHMARKS.md.
#   tests/bench/run-all.sh
# Each bench prints its own figures, measured in the same run, with ratios
# where it compares; this script only gathers them under one heading with
# the machine and the date. Release build; takes about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/BENCHMARKS.md
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  echo "# Benchmarks"
  echo
  echo "Written by \`tests/bench/run-all.sh\` on $(date -u +%Y-%m-%dT%H:%MZ)."
  echo "Machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //' || echo unknown CPU)."
  echo "The machine is shared and noisy: compare the ratios measured within one run, not absolute times across runs."
  echo
  for bench in policy save worker search; do
    echo "## \`cargo bench -p mem0-queue --bench $bench\`"
    echo
    echo '```text'
    cargo bench -q -p mem0-queue --bench "$bench" 2>/dev/null
    echo '```'
    echo
  done
} > "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out"
