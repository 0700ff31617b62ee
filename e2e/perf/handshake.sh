#!/usr/bin/env bash
# SSH connection setup for a known key, toolgate vs OpenSSH's sshd in the same run (issue 3):
# BenchmarkHandshake in sshd/ with an x/crypto client against (1) an in-process toolgate SSH
# server with its production authenticator and (2) ../shared/bench/sshd-reference's sshd.
#
#   e2e/perf/handshake.sh                 # 5 interleaved counts of 3s each
#   COUNT=3 BENCHTIME=2s e2e/perf/handshake.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
SSHD_REFERENCE=${SSHD_REFERENCE:-$repo/../shared/bench/sshd-reference}
COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-3s}
[ -x "$SSHD_REFERENCE" ] || { echo "handshake.sh: $SSHD_REFERENCE not found (set SSHD_REFERENCE)" >&2; exit 2; }
work=$(mktemp -d)
ref=""
trap '[ -n "$ref" ] && kill "$ref" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
read -r LOCAL PUBLIC SSHD_PORT < <(go run ./e2e/perf/loadgen freeports -n 3)
"$SSHD_REFERENCE" "$LOCAL" "$PUBLIC" "$SSHD_PORT" >"$work/ref.log" 2>&1 &
ref=$!
for _ in $(seq 100); do grep -q '^ready' "$work/ref.log" && break; sleep 0.1; done
grep -q '^ready' "$work/ref.log" || { cat "$work/ref.log" >&2; exit 1; }
# The reference's user key is the -i argument of the ssh client it started.
key=""
for p in /proc/[0-9]*; do
  [ "$(cut -d' ' -f4 "$p/stat" 2>/dev/null)" = "$ref" ] || continue
  mapfile -d '' argv <"$p/cmdline" 2>/dev/null || continue
  [ "$(basename "${argv[0]:-}")" = ssh ] || continue
  for i in "${!argv[@]}"; do [ "${argv[$i]}" = -i ] && key=${argv[$((i + 1))]}; done
done
[ -n "$key" ] || { echo "handshake.sh: could not find sshd-reference's user key" >&2; exit 1; }
go test -c -o "$work/sshd.test" ./sshd/
TOOLGATE_BENCH_SSHD=127.0.0.1:$SSHD_PORT TOOLGATE_BENCH_SSHD_KEY=$key TOOLGATE_BENCH_SSHD_USER=$(id -un) \
  "$work/sshd.test" -test.run XXX -test.bench Handshake -test.cpu 2 -test.benchtime "$BENCHTIME" -test.count "$COUNT" | tee "$work/bench.txt"
