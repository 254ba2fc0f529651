#!/usr/bin/env bash
# Instructions per message (docs/BENCHMARKS.md, "Instructions per message"): runs the
# icount example (benches/comparison/examples/icount.rs) under callgrind at two message
# counts and divides the difference of the inclusive counts of its `icount_send` and
# `icount_recv` functions by the difference of the counts. Deterministic: unaffected by
# other load on the machine.
#
#   scripts/icount.sh [mode...]   (default: all modes; needs valgrind)
#   ICOUNT_BIN=path/to/icount scripts/icount.sh   (another build of the harness)
set -euo pipefail
cd "$(dirname "$0")/.."
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(raw-rtt raw-stream typed-rtt typed-stream typed-rtt-copy)
N1=${ICOUNT_N1:-2048}
N2=${ICOUNT_N2:-10240}
# ICOUNT_BIN: count another build of the harness (e.g. of an older commit) instead.
bin=${ICOUNT_BIN:-target/release/examples/icount}
[ -n "${ICOUNT_BIN:-}" ] || cargo build --release -q -p capnp-shm-comparison --example icount
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Inclusive instructions of function $2 in callgrind output $1.
incl() {
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null >"$1.txt"
  awk -v f="$2" '$0 ~ ("icount::" f "[ ]") || $0 ~ ("icount::" f "$") { gsub(",", "", $1); print $1; exit }' "$1.txt"
}

printf '%-16s %10s %10s %10s\n' mode send/msg recv/msg total
for mode in "${modes[@]}"; do
  for n in "$N1" "$N2"; do
    valgrind --tool=callgrind --callgrind-out-file="$tmp/$mode.$n" "$bin" "$mode" "$n" >/dev/null 2>&1
  done
  s1=$(incl "$tmp/$mode.$N1" icount_send); s2=$(incl "$tmp/$mode.$N2" icount_send)
  r1=$(incl "$tmp/$mode.$N1" icount_recv); r2=$(incl "$tmp/$mode.$N2" icount_recv)
  awk -v m="$mode" -v s1="$s1" -v s2="$s2" -v r1="$r1" -v r2="$r2" -v d="$((N2 - N1))" \
    'BEGIN { s = (s2 - s1) / d; r = (r2 - r1) / d; printf "%-16s %10.1f %10.1f %10.1f\n", m, s, r, s + r }'
done
