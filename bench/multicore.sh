#!/usr/bin/env bash
# multicore.sh compares package net, one hub per side and a group of hubs per
# side (poller.Group through grpcopt.Config.Group) at GOMAXPROCS 2, 4, 8 and
# 16, on the gRPC echo of hubio-bench, and prints one table per GOMAXPROCS,
# each hub's load (readiness events/s and events per poll, server and client
# hubs), and a summary of RPCs/s across GOMAXPROCS.
#
# Cases, per set-up (SETUPS, hubio-bench's -setup values; "both" by default:
# server and clients in one process, each side on its hubs): unary and
# stream, 64 B, 128 callers on 128 conns; 64 B, 1000 callers on 1000 conns,
# unary in set-up both (where one hub's batching wins), unary and stream in
# the split set-ups (server: the server alone on the transport, its clients
# on package net in a second process, as most services run). GOMAXPROCS
# applies to each process: a split set-up at GOMAXPROCS 8 runs two processes
# of 8. Three rounds of 1 s each, interleaved. About 5 minutes on 16 cores
# per set-up; under 8.
#
# Usage (from anywhere in the repository):
#   bench/multicore.sh                 # group of 4 hubs
#   GROUP=8 ROUNDS=5 bench/multicore.sh
#   PROCS="2 4" bench/multicore.sh     # other GOMAXPROCS values
#   SETUPS="both server" PROCS="4 8" ROUNDS=7 DURATION=2s bench/multicore.sh
#                                      # issue 21's set-ups on a larger machine
#   PROCS=2 ROUNDS=1 DURATION=100ms bench/multicore.sh   # a smoke test
# The full output also goes to multicore-<date>.md in the working directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
group=${GROUP:-4}
rounds=${ROUNDS:-3}
duration=${DURATION:-1s}
procs=${PROCS:-"2 4 8 16"}
setups=${SETUPS:-both}
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)
out=${OUT:-multicore-$(date -u +%Y%m%dT%H%M%SZ).md}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say() { echo "$@" | tee -a "$out"; }

: >"$out"
say "# multicore: std vs hub vs hub$group"
say
say "$(uname -srm), $cores cores online, $(cd "$root" && go version | cut -d' ' -f3)."
maxp=0
for p in $procs; do ((p > maxp)) && maxp=$p; done
if ((cores < maxp)); then
	say
	say "NOTE: this machine has $cores cores, fewer than GOMAXPROCS $maxp: rows with GOMAXPROCS above $cores"
	say "oversubscribe the cores and show no scaling; run this on a machine with at least $maxp cores."
fi

(cd "$root/bench" && go build -o "$work/hubio-bench" ./cmd/hubio-bench)
start=$SECONDS
for p in $procs; do
	for setup in $setups; do
		specs=("unary,stream 128 128" "unary 1000 1000")
		[ "$setup" = both ] || specs=("unary,stream 128 128" "unary,stream 1000 1000")
		for spec in "${specs[@]}"; do
			read -r modes conc conns <<<"$spec"
			say
			say "## GOMAXPROCS $p, set-up $setup, $modes, c$conc, $conns conns"
			say
			GOMAXPROCS=$p "$work/hubio-bench" -setup "$setup" -rounds "$rounds" -duration "$duration" -modes "$modes" \
				-payloads 64 -conc "$conc" -conns "$conns" -transports std,hub -hubs "1,$group" -svg= \
				>"$work/P$p-$setup-c$conc.md" 2> >(tail -n 1 >&2)
			tee -a "$out" <"$work/P$p-$setup-c$conc.md"
		done
	done
done

# Summary: RPCs/s and the ratio to std, per GOMAXPROCS, case and transport,
# from the first table of each output.
say
say "## Summary: RPCs/s (and over std)"
say
say "| GOMAXPROCS | case | std | hub | hub$group |"
say "|--:|---|--:|--:|--:|"
for p in $procs; do
	for f in "$work/P$p-"*"-c128.md" "$work/P$p-"*"-c1000.md"; do
		awk -v p="$p" -F'|' '
			/^\| case \| transport \| RPCs\/s \| / { in_table = 1; next }
			in_table && /^\|---/ { next }
			in_table && !/^\|/ { in_table = 0 }
			in_table {
				gsub(/^ +| +$/, "", $2); gsub(/^ +| +$/, "", $3); gsub(/^ +| +$/, "", $4)
				if ($2 != "") { if (c != "") flush(); c = $2 }
				rps[$3] = $4
			}
			END { if (c != "") flush() }
			function flush(   s, h, g) {
				s = rps["std"]; h = rps["hub"]; g = rps["hub'"$group"'"]
				printf "| %s | %s | %s | %s | %s |\n", p, c, s, cell(h, s), cell(g, s)
				delete rps
			}
			function cell(v, s) {
				if (v == "" || v ~ /failed/) return "failed"
				if (s + 0 > 0) return sprintf("%s (%.2f)", v, v / s)
				return v
			}
		' "$f" | tee -a "$out"
	done
done
say
say "Ran in $((SECONDS - start)) s. Output also in $out."
