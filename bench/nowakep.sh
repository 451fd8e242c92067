#!/usr/bin/env bash
# nowakep.sh measures how much of the hub's single-pair ping-pong gap comes
# from the Go runtime, not from hubio.
#
# When the hub tells a parked waiter "ready", the only way a stock Go program
# can make a goroutine runnable is the runtime's ready(), and ready() always
# calls wakep(): with an idle processor, that wakes another OS thread (a futex
# wake) on every readiness event. Package net's poller hands the reader
# straight to the thread that polled and pays no such wake.
#
# This script copies the local Go toolchain to a temporary directory, patches
# ready() so that the environment variable HUBIO_NOWAKEP=1 skips wakep(), builds
# the transport benchmarks with that copy, and runs BenchmarkPingPong
# interleaved with and without the switch (same binary). The toolchain copy and
# its build cache live in the temporary directory, removed at exit; nothing
# outside it changes.
#
# Usage (from anywhere in the repository; COUNT rounds, default 6):
#   bench/nowakep.sh
# or, for gRPC through hubio-bench built with the same patched runtime (the
# arguments go to hubio-bench; it runs once stock, once without wakep()):
#   bench/nowakep.sh grpc -modes unary,stream -payloads 64 -conc 16,128 -transports std,hub
# Needs about 300 MB in $TMPDIR and a couple of minutes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
count=${COUNT:-6}
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

goroot=$(cd "$root" && go env GOROOT) # the toolchain this module builds with
cp -a "$goroot" "$work/go"
chmod -R u+w "$work/go"
proc="$work/go/src/runtime/proc.go"
# Read the switch once the environment is parsed, and consult it in ready().
perl -0pi -e 's/(\n\tgoenvs\(\)\n)/$1\tnowakep = gogetenv("HUBIO_NOWAKEP") != ""\n/;
	s/(\trunqput\(mp\.p\.ptr\(\), gp, next\)\n)\twakep\(\)\n/$1\tif !nowakep {\n\t\twakep()\n\t}\n/;
	s/$/\n\n\/\/ nowakep: set by bench\/nowakep.sh (a diagnostic, never for production).\nvar nowakep bool\n/' "$proc"
if [ "$(grep -c nowakep "$proc")" -lt 4 ]; then
	echo "nowakep.sh: the patch did not apply to $goroot/src/runtime/proc.go (runtime changed?)" >&2
	exit 1
fi

if [ "${1:-}" = grpc ]; then
	shift
	echo "building hubio-bench with a patched copy of $("$work/go/bin/go" version)" >&2
	(cd "$root/bench" && GOTOOLCHAIN=local GOROOT="$work/go" GOCACHE="$work/cache" \
		"$work/go/bin/go" build -o "$work/hubio-bench" ./cmd/hubio-bench)
	for mode in stock nowakep; do
		echo
		echo "## runtime: $mode"
		env=()
		[ "$mode" = nowakep ] && env=(HUBIO_NOWAKEP=1)
		(cd "$root/bench" && env "${env[@]}" "$work/hubio-bench" -svg "" "$@" 2>/dev/null)
	done
	exit 0
fi

echo "building the transport benchmarks with a patched copy of $("$work/go/bin/go" version)" >&2
(cd "$root" && GOTOOLCHAIN=local GOROOT="$work/go" GOCACHE="$work/cache" \
	"$work/go/bin/go" test -c -o "$work/transport.test" ./transport)

for i in $(seq "$count"); do
	echo "round $i of $count" >&2
	for mode in stock nowakep; do
		env=()
		[ "$mode" = nowakep ] && env=(HUBIO_NOWAKEP=1)
		env "${env[@]}" "$work/transport.test" -test.run '^$' \
			-test.bench PingPong -test.count 1 |
			awk -v m="$mode" '/^BenchmarkPingPong/ { print m, $1, $3 }'
	done
done >"$work/results"

# Median ns/op per runtime and case, and hub/std (std's time over the hub's:
# above 1, the hub is faster).
echo
echo "| runtime | case | std ns/op | hub ns/op | hub/std |"
echo "|---|---|--:|--:|--:|"
sort -k1,1 -k2,2 -k3,3n "$work/results" | awk '
	{ k = $1 " " $2; v[k, ++n[k]] = $3 }
	END {
		for (k in n) {
			c = n[k]
			med[k] = (c % 2) ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2
		}
		split("stock nowakep", ms, " ")
		split("1 16", ps, " ")
		for (i = 1; i <= 2; i++) for (j = 1; j <= 2; j++) {
			sv = hv = 0
			s = ms[i] " BenchmarkPingPong/pairs=" ps[j] "/std"
			h = ms[i] " BenchmarkPingPong/pairs=" ps[j] "/hub"
			for (k in med) {
				if (index(k, s) == 1) sv = med[k]
				if (index(k, h) == 1) hv = med[k]
			}
			if (sv == 0 || hv == 0) {
				printf "| %s | ping-pong, %s pair(s) | missing | missing | |\n", ms[i], ps[j]
				continue
			}
			printf "| %s | ping-pong, %s pair(s) | %.0f | %.0f | %.2f |\n", ms[i], ps[j], sv, hv, sv / hv
		}
	}'
