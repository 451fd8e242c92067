#!/usr/bin/env bash
# readyspread.sh measures whether the place the Go runtime puts a readied
# goroutine is what costs a process with many busy hub conns its throughput.
#
# The hub readies a poll's waiters with channel sends, and the runtime's
# ready() puts each one on the current P's run queue (runnext), so a batch
# of 20-100 waiters lands on the hub's P and another P must steal half of
# it. Package net's poller hands the goroutines it finds to injectglist,
# which puts them on the global queue while Ps are idle, so each idle P takes
# its own share directly.
#
# This script copies the local Go toolchain to a temporary directory and
# patches ready() so that, with HUBIO_READYSPREAD=1 in the environment, a
# goroutine that readies a second (third, ...) goroutine in one run puts it
# on the global run queue whenever a P is idle (as injectglist does), and on
# its local queue otherwise. The first goroutine a run readies still goes to
# runnext as before: that keeps the ordinary channel hand-off (one goroutine
# wakes the next and blocks) where it was, and changes only batches, such as
# a hub's poll. (Spreading every ready() makes package net itself a third
# slower on this case: its handler-to-writer hand-offs leave the P.) It builds
# hubio-bench with that copy and runs the given hubio-bench arguments with
# every transport twice, interleaved round by round in one run: NAME as the
# stock runtime behaves, NAME@alt with the switch on (the -alt binary is a
# wrapper that sets it). The switch applies to every ready() of the process,
# package net's included, so std@alt is package net under the same runtime
# change.
#
# Usage (from anywhere in the repository):
#   bench/readyspread.sh -modes unary,stream -payloads 64 -conc 128 -conns 128 -rounds 7
# Needs about 300 MB in $TMPDIR and a few minutes. KEEP=DIR also leaves the
# patched hubio-bench and its wrapper in DIR, to rerun without rebuilding:
#   DIR/hubio-bench -alt DIR/spread -transports std,std@alt,hub,hub@alt ... A diagnostic only: the
# toolchain copy and its build cache live in the temporary directory, removed
# at exit, and the patched runtime is used for nothing else.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

goroot=$(cd "$root" && go env GOROOT)
cp -a "$goroot" "$work/go"
chmod -R u+w "$work/go"
proc="$work/go/src/runtime/proc.go"
perl -0pi -e 's/(\n\tgoenvs\(\)\n)/$1\treadyspread = gogetenv("HUBIO_READYSPREAD") != ""\n/;
	s/(\nfunc execute\(gp \*g, inheritTime bool\) \{\n\tmp := getg\(\)\.m\n)/$1\tmp.readyn = 0\n/;
	s/\trunqput\(mp\.p\.ptr\(\), gp, next\)\n\twakep\(\)\n\treleasem\(mp\)\n/\tmp.readyn++\n\tif readyspread && mp.readyn > 1 && sched.npidle.Load() > 0 {\n\t\tlock(&sched.lock)\n\t\tglobrunqput(gp)\n\t\tunlock(&sched.lock)\n\t} else {\n\t\trunqput(mp.p.ptr(), gp, next)\n\t}\n\twakep()\n\treleasem(mp)\n/;
	s/$/\n\n\/\/ readyspread: set by bench\/readyspread.sh (a diagnostic, never for production).\nvar readyspread bool\n/' "$proc"
perl -0pi -e 's/(\n\tcurg +\*g +\/\/ current running goroutine\n)/$1\treadyn int32 \/\/ goroutines readied by curg in this run; bench\/readyspread.sh\n/' "$work/go/src/runtime/runtime2.go"
if [ "$(grep -c readyspread "$proc")" -lt 4 ] || [ "$(grep -c 'readyn' "$proc")" -lt 3 ] || ! grep -q readyn "$work/go/src/runtime/runtime2.go"; then
	echo "readyspread.sh: the patch did not apply to $goroot/src/runtime/proc.go (runtime changed?)" >&2
	exit 1
fi

echo "building hubio-bench with a patched copy of $("$work/go/bin/go" version)" >&2
(cd "$root/bench" && GOTOOLCHAIN=local GOROOT="$work/go" GOCACHE="$work/cache" \
	"$work/go/bin/go" build -o "$work/hubio-bench" ./cmd/hubio-bench)
printf '#!/bin/sh\nHUBIO_READYSPREAD=1 exec "%s" "$@"\n' "$work/hubio-bench" >"$work/spread"
chmod +x "$work/spread"
if [ -n "${KEEP:-}" ]; then
	mkdir -p "$KEEP"
	cp "$work/hubio-bench" "$KEEP/hubio-bench"
	printf '#!/bin/sh\nHUBIO_READYSPREAD=1 exec "%s" "$@"\n' "$KEEP/hubio-bench" >"$KEEP/spread"
	chmod +x "$KEEP/spread"
fi
transports=${TRANSPORTS:-std,hub}
both=$(echo "$transports" | sed 's/\([^,]*\)/\1,\1@alt/g')
echo "load: $(uptime)" >&2
(cd "$root/bench" && "$work/hubio-bench" -svg "" -alt "$work/spread" -transports "$both" "$@" 2>/dev/null)
echo "load: $(uptime)" >&2
