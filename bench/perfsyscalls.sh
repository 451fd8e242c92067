#!/usr/bin/env bash
# perfsyscalls.sh: syscalls, context switches and migrations per RPC of the
# process that holds the transport under test, as `perf stat -p` counts them
# over the middle of a hubio-bench run, for each transport in turn
# (interleaved rounds). Linux, perf, root or perf_event_paranoid <= 1.
#
#   bench/perfsyscalls.sh [hubio-bench flags]   # e.g. -setup server -modes stream -conc 1000 -conns 1000
#
# ROUNDS (default 3), TRANSPORTS (default "std hub"), WARMUP (1s) and
# DURATION (4s) set the runs; perf counts PERF_S seconds (3) starting
# PERF_AT seconds (1.5) after the measured child starts. The RPCs of the
# perf window are the run's RPCs/s times PERF_S, so the figures are per RPC
# to within the rate's drift over the run.
set -euo pipefail
cd "$(dirname "$0")"
ROUNDS=${ROUNDS:-3}
TRANSPORTS=${TRANSPORTS:-"std hub"}
WARMUP=${WARMUP:-1s}
DURATION=${DURATION:-4s}
PERF_S=${PERF_S:-3}
PERF_AT=${PERF_AT:-1.5}
EVENTS=${EVENTS:-'syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep,context-switches,cpu-migrations'}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/hubio-bench" ./cmd/hubio-bench
echo "load: $(uptime)"
printf '| transport | round | RPCs/s | %s |\n' "$(echo "$EVENTS" | sed 's/syscalls:sys_enter_//g; s/,/ | /g')"
printf '|---|--:|--:|%s\n' "$(echo "$EVENTS" | sed 's/[^,]*/--:|/g; s/,//g')"
for r in $(seq "$ROUNDS"); do
	for t in $TRANSPORTS; do
		"$tmp/hubio-bench" -rounds 1 -warmup "$WARMUP" -duration "$DURATION" -transports "$t" -svg "" "$@" >"$tmp/out.md" 2>/dev/null &
		bench=$!
		child=""
		for _ in $(seq 200); do
			child=$(pgrep -P "$bench" | head -1 || true)
			[ -n "$child" ] && break
			sleep 0.01
		done
		[ -n "$child" ] || { echo "no child of $bench" >&2; wait "$bench"; continue; }
		sleep "$PERF_AT"
		perf stat -x, -e "$EVENTS" -p "$child" -- sleep "$PERF_S" 2>"$tmp/perf.csv" || true
		wait "$bench"
		rps=$(awk -F'|' -v t="$t" '$3 ~ "^ *"t" *$" && $4 ~ /[0-9]/ {gsub(/ /,"",$4); print $4; exit}' "$tmp/out.md")
		[ -n "$rps" ] || { echo "no RPCs/s for $t" >&2; cat "$tmp/out.md" >&2; continue; }
		cells=$(awk -F, -v n="$rps" -v s="$PERF_S" '$1 ~ /^[0-9]+$/ {printf " %.3f |", $1/(n*s)}' "$tmp/perf.csv")
		echo "| $t | $r | $rps |$cells"
	done
done
