#!/usr/bin/env bash
# telcost.sh measures telemetry's share of CPU per RPC, the method of
# docs/telemetry.md: each hubio-bench run writes a CPU profile per case and
# transport, and telemetry's cost is the share of the profile's samples that
# have a frame in telemetry, the OpenTelemetry SDK, or the hub's observer
# hooks. A share of one run's own profile needs no throughput comparison,
# which moves ±10-20% between rounds on a small VM.
#
# Two hubio-bench binaries (built from two commits' bench/, or the same one
# twice) run alternately, TURNS turns each, the order swapped every turn, a
# fresh process per run. Each turn is one -rounds 1 run of every case and
# transport. The report gives, per binary, case and transport, the share
# pooled over the turns' samples (sum of focus samples over sum of all
# samples), the range of the turns' own shares, and the seconds of samples.
#
# Usage (from anywhere in the repository):
#   bench/telcost.sh OUT TURNS BIN_A BIN_B [hubio-bench flags]
# for example
#   cd bench && go build -o /tmp/new ./cmd/hubio-bench
#   bench/telcost.sh /tmp/tc 4 /tmp/old /tmp/new -transports hub-notel,hub-sdk,hub-sdkprod \
#       -modes unary,stream -payloads 64 -conc 1,16,128 -duration 6s
# OUT keeps every profile (OUT/A-turnN/, OUT/B-turnN/) and the report
# (OUT/report.md). Needs Go's pprof (go tool pprof).
set -euo pipefail

if [ $# -lt 4 ]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 2
fi
out=$1 turns=$2 binA=$3 binB=$4
shift 4
mkdir -p "$out"

# The frames telemetry costs: the package and its producer module, the SDK
# and API, and the poller's observer hooks (which run only with an
# observer: the loop-time accounting, the hand-off stamps, the per-poll and
# per-timer reports), with runTimers, whose heap telemetry used to fill.
focus='hubio/hubio/telemetry[./]|go\.opentelemetry\.io|poller\.\(\*observing\)\.(park|unpark|polled|queued|queueWait|loopDelay|delivering|ranCallbacks)|poller\.observers|poller\.\(\*Hub\)\.LoopTime|poller\.\(\*Hub\)\.runTimers'

for t in $(seq 1 "$turns"); do
	order="A B"
	if [ $((t % 2)) -eq 0 ]; then order="B A"; fi
	for w in $order; do
		bin=$binA
		if [ "$w" = B ]; then bin=$binB; fi
		dir=$out/$w-turn$t
		mkdir -p "$dir"
		echo "turn $t/$turns, binary $w ($bin), load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
		"$bin" -metrics -rounds 1 -svg "" -cpuprofile "$dir" "$@" >"$dir/bench.txt" 2>&1
	done
done

# seconds converts pprof's durations (1.23s, 450ms, 10us) to seconds.
seconds() {
	awk -v d="$1" 'BEGIN {
		if (d ~ /ms$/) { sub(/ms$/, "", d); print d / 1000 }
		else if (d ~ /us$/) { sub(/us$/, "", d); print d / 1e6 }
		else if (d ~ /ns$/) { sub(/ns$/, "", d); print d / 1e9 }
		else if (d ~ /m[0-9.]*s$/ && d ~ /^[0-9.]+m/) { split(d, a, "m"); sub(/s$/, "", a[2]); print a[1] * 60 + a[2] }
		else { sub(/s$/, "", d); print d + 0 }
	}'
}

# One line per profile: binary, case-and-transport, focus seconds, total seconds.
rows=$out/rows.tsv
: >"$rows"
for dir in "$out"/[AB]-turn*; do
	w=$(basename "$dir" | cut -d- -f1)
	for p in "$dir"/*.pprof; do
		name=$(basename "$p" .pprof)
		name=${name%-r1}
		top=$(go tool pprof -top -nodecount=1000000 -nodefraction=0 -edgefraction=0 -focus="$focus" "$p" 2>/dev/null || true)
		total=$(printf '%s\n' "$top" | sed -n 's/.*Total samples = \([^ ]*\) .*/\1/p')
		shown=$(printf '%s\n' "$top" | sed -n 's/^Showing nodes accounting for \([^,]*\),.*/\1/p')
		[ -n "$total" ] || continue
		[ -n "$shown" ] || shown=0s
		printf '%s\t%s\t%s\t%s\n' "$w" "$name" "$(seconds "$shown")" "$(seconds "$total")" >>"$rows"
	done
done

{
	echo "Telemetry's share of CPU per RPC: A = $binA, B = $binB; $turns turns; flags: $*"
	echo
	echo "| case and transport | A: pooled (turns) | A: samples | B: pooled (turns) | B: samples |"
	echo "|---|--:|--:|--:|--:|"
	cut -f2 "$rows" | sort -u | while read -r name; do
		line="| $name"
		for w in A B; do
			line="$line | $(awk -F'\t' -v w="$w" -v n="$name" '
				$1 == w && $2 == n { f += $3; s += $4; r = ($4 > 0) ? 100 * $3 / $4 : 0
					if (c == 0 || r < lo) lo = r; if (c == 0 || r > hi) hi = r; c++ }
				END { if (c == 0 || s == 0) { print "– | –"; exit }
					printf "%.2f%% (%.1f–%.1f) | %.1f s", 100 * f / s, lo, hi, s }' "$rows")"
		done
		echo "$line |"
	done
} | tee "$out/report.md"
