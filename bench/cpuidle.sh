#!/usr/bin/env bash
# cpuidle.sh: how much of the machine's CPU time stays idle while
# hubio-bench runs one transport, for each transport in turn (interleaved
# rounds), from /proc/stat; with PERF=1 also `perf sched` over one second of
# each run: the idle time of each CPU and the time both were idle at once,
# which tells a process that ran out of work (both idle) from one whose
# runnable threads shared one CPU while the other idled. Linux; PERF=1 needs
# perf and root (or perf_event_paranoid <= 1). CHRT="-b 0" runs the bench
# under SCHED_BATCH (no wake-up preemption), for the A/B that shows what the
# kernel's placement of woken threads costs.
#
#   bench/cpuidle.sh [hubio-bench flags]   # e.g. -setup both -modes stream -payloads 64 -conc 128 -conns 128
#
# ROUNDS (default 3), TRANSPORTS (default "std hub"), WARMUP (300ms) and
# DURATION (5s) set the runs; perf records from PERF_AT seconds (2) after a
# run starts, so keep DURATION above PERF_AT + 1. The /proc/stat figures
# cover the whole run, warm-up and set-up included, so compare transports,
# not absolute values. The perf columns are CPUs 0 and 1 (a 2-CPU machine,
# as this project's VM).
set -euo pipefail
cd "$(dirname "$0")"
ROUNDS=${ROUNDS:-3}
TRANSPORTS=${TRANSPORTS:-"std hub"}
WARMUP=${WARMUP:-300ms}
DURATION=${DURATION:-5s}
PERF=${PERF:-0}
PERF_AT=${PERF_AT:-2}
CHRT=${CHRT:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/hubio-bench" ./cmd/hubio-bench
run=("$tmp/hubio-bench")
[ -n "$CHRT" ] && run=(chrt $CHRT "$tmp/hubio-bench")
echo "load: $(uptime)${CHRT:+; chrt $CHRT}"
printf '| transport | round | RPCs/s | CPU busy (user, nice, sys, irq, softirq) | idle | steal |%s\n' "$([ "$PERF" = 1 ] && echo ' perf: CPU 0 idle | CPU 1 idle | both idle |')"
printf '|---|--:|--:|--:|--:|--:|%s\n' "$([ "$PERF" = 1 ] && echo '--:|--:|--:|')"
stat() { awk '/^cpu / {print $2+$3, $4, $5+$6, $7, $8, $9}' /proc/stat; }
for r in $(seq "$ROUNDS"); do
	for t in $TRANSPORTS; do
		read -r u s i q sq st < <(stat)
		"${run[@]}" -rounds 1 -warmup "$WARMUP" -duration "$DURATION" -transports "$t" -svg "" "$@" >"$tmp/out.md" 2>"$tmp/bench.err" &
		bench=$!
		perfcells=""
		if [ "$PERF" = 1 ]; then
			sleep "$PERF_AT"
			perfcells=" – | – | – |"
			if perf sched record -q -o "$tmp/sched.data" -a -- sleep 1 >/dev/null 2>"$tmp/perf.err"; then
				# Each CPU's idle periods come in time order: one sweep
				# finds where CPU 0's and CPU 1's overlap.
				perfcells=$(perf sched timehist -i "$tmp/sched.data" -I 2>/dev/null | awk '
					$3 ~ /idle/ && $1 ~ /^[0-9.]+$/ { cpu = $2; gsub(/[][]/, "", cpu); cpu += 0; end = $1; d = $NF / 1000
						n[cpu]++; a[cpu, n[cpu]] = end - d; b[cpu, n[cpu]] = end; tot[cpu] += d }
					END { both = 0; i = 1; j = 1
						while (i <= n[0] && j <= n[1]) {
							lo = a[0, i] > a[1, j] ? a[0, i] : a[1, j]; hi = b[0, i] < b[1, j] ? b[0, i] : b[1, j]
							if (hi > lo) both += hi - lo
							if (b[0, i] < b[1, j]) i++; else j++ }
						printf " %.0f ms | %.0f ms | %.0f ms |", tot[0] * 1000, tot[1] * 1000, both * 1000 }') || perfcells=" – | – | – |"
			else
				echo "perf sched record failed: $(head -1 "$tmp/perf.err")" >&2
			fi
		fi
		if ! wait "$bench"; then
			echo "hubio-bench failed for $t, round $r:" >&2
			cat "$tmp/bench.err" >&2
			continue
		fi
		read -r u2 s2 i2 q2 sq2 st2 < <(stat)
		rps=$(awk -F'|' -v t="$t" '$3 ~ "^ *"t" *$" && $4 ~ /[0-9]/ {gsub(/ /,"",$4); print $4; exit}' "$tmp/out.md")
		busy=$(( (u2-u) + (s2-s) + (sq2-sq) + (q2-q) )); idle=$((i2-i)); steal=$((st2-st)); all=$((busy+idle+steal))
		awk -v t="$t" -v r="$r" -v rps="${rps:-?}" -v b="$busy" -v i="$idle" -v s="$steal" -v a="$all" -v p="$perfcells" \
			'BEGIN { printf "| %s | %s | %s | %.0f%% | %.0f%% | %.1f%% |%s\n", t, r, rps, 100*b/a, 100*i/a, 100*s/a, p }'
	done
done
