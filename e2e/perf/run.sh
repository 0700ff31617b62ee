#!/usr/bin/env bash
# One side-by-side benchmark run of toolgate (docs/PERFORMANCE.md explains the method):
#   (a) direct to a small Go HTTP server (loadgen backend),
#   (b) through OpenSSH's sshd remote forward (../shared/bench/sshd-reference, real ssh -N -R),
#   (c) through toolgate: HTTPS in front, the real OpenSSH client as the tunnel client; started
#       with --tunnel-auth none, so that its figures stay comparable with earlier runs,
#   (d) the same through a second toolgate with --tunnel-auth oauth (the default), every request
#       carrying an OAuth access token that loadgen obtains as a user and an MCP client would.
# Rounds are interleaved (each round measures a, b, c and d, in a rotated order; one path at a
# time, so the two toolgates never compete); the table gives the median over rounds and the
# [min–max] spread, and a second table sets (d) against (c): OAuth on vs off in the same
# rounds. Then 1,000 idle tunnels on a fresh toolgate (x/crypto clients in loadgen) for memory
# and goroutines per tunnel. With wrk installed, every round also runs the small-request cells
# of (a), (b) and (c) with wrk, a C client that leaves more of the two cores to the paths.
#
#   e2e/perf/run.sh                      # ~4 minutes on 2 cores
#   ROUNDS=3 DURATION=1s e2e/perf/run.sh # quicker, noisier
#   RESULTS=/tmp/perf e2e/perf/run.sh    # keep raw results (JSONL), logs and the table there
#   BASELINE=/tmp/toolgate-old e2e/perf/run.sh
#                                        # A/B of two builds: (d) runs that binary, with
#                                        # --tunnel-auth none like (c), and no token
#
# Needs: Go (the version in go.mod), OpenSSH client and server, optionally wrk:
#   apt-get install -y openssh-client openssh-server wrk
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-2s}
WARM=${WARM:-300ms}
SCALE_N=${SCALE_N:-1000}
SSE_SAMPLES=${SSE_SAMPLES:-3}
SSHD_REFERENCE=${SSHD_REFERENCE:-$repo/../shared/bench/sshd-reference}

# --- requirements -------------------------------------------------------------------------
missing=()
command -v go >/dev/null || missing+=("Go toolchain (https://go.dev/dl, version as in go.mod)")
command -v ssh >/dev/null || missing+=("openssh-client")
command -v ssh-keygen >/dev/null || missing+=("openssh-client (ssh-keygen)")
{ command -v sshd >/dev/null || [ -x /usr/sbin/sshd ]; } || missing+=("openssh-server")
[ -x "$SSHD_REFERENCE" ] || missing+=("the sshd-reference script at $SSHD_REFERENCE (set SSHD_REFERENCE)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "on Debian: apt-get install -y openssh-client openssh-server wrk" >&2
  exit 2
fi
have_wrk=1
command -v wrk >/dev/null || { have_wrk=0; echo "run.sh: wrk not installed; skipping the wrk cells (apt-get install -y wrk)" >&2; }

# 1,000 SSH connections need 2,000+ descriptors across loadgen and toolgate.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
[ "$(ulimit -n)" -ge $((SCALE_N * 2 + 200)) ] || echo "run.sh: warning: ulimit -n is $(ulimit -n), low for $SCALE_N connections" >&2

# --- processes and cleanup ----------------------------------------------------------------
work=$(mktemp -d /tmp/toolgate-perf.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  if [ -n "${RESULTS:-}" ]; then
    mkdir -p "$RESULTS" && cp -r "$work"/*.jsonl "$work"/*.log "$work"/table.md "$RESULTS"/ 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start() { # start LOGNAME CMD...: run in the background, remember the pid
  local log=$1; shift
  "$@" >"$work/$log.log" 2>&1 &
  pids+=($!)
}
stop() { # stop PID: end one process we started and wait for it
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

children() { # children PID: the direct children of PID
  local p
  for p in /proc/[0-9]*; do
    [ "$(cut -d' ' -f4 "$p/stat" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
  done
  return 0
}
descendants() { # descendants PID: PID and everything under it
  local c
  echo "$1"
  for c in $(children "$1"); do descendants "$c"; done
}
joined() { tr '\n' ',' | sed 's/,$//'; }

echo "== machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3), $(ssh -V 2>&1 | cut -d, -f1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== building into $work"
go build -o "$work/toolgate" ./cmd/toolgate
go build -o "$work/loadgen" ./e2e/perf/loadgen
lg=$work/loadgen
res=$work/results.jsonl

read -r LOCAL PUBLIC SSHD_PORT SETUP_PUBLIC HTTPS SSHP ADMIN HTTPS2 SSHP2 ADMIN2 HTTPS_D SSHP_D ADMIN_D \
  < <("$lg" freeports -n 13)

# (a) the local server
start backend "$lg" backend -listen "127.0.0.1:$LOCAL"
backend_pid=${pids[-1]}

# (b) OpenSSH sshd with ssh -N -R PUBLIC:127.0.0.1:LOCAL
start sshd-reference "$SSHD_REFERENCE" "$LOCAL" "$PUBLIC" "$SSHD_PORT"
ref_pid=${pids[-1]}
for _ in $(seq 100); do grep -q '^ready' "$work/sshd-reference.log" && break; sleep 0.1; done
grep -q '^ready' "$work/sshd-reference.log" || { cat "$work/sshd-reference.log" >&2; exit 1; }
# For the setup figure of (b), a second ssh -N -R against the same sshd needs the reference's
# throwaway user key: it is the -i argument of the ssh client the script started.
ref_key=""
for p in /proc/[0-9]*; do
  [ "$(cut -d' ' -f4 "$p/stat" 2>/dev/null)" = "$ref_pid" ] || continue
  mapfile -d '' argv <"$p/cmdline" 2>/dev/null || continue
  [ "$(basename "${argv[0]:-}")" = ssh ] || continue
  for i in "${!argv[@]}"; do [ "${argv[$i]}" = -i ] && ref_key=${argv[$((i + 1))]}; done
done
[ -n "$ref_key" ] || echo "run.sh: could not find sshd-reference's user key; skipping setup figure for (b)" >&2
ref_ssh=$(children "$ref_pid" | head -1)

# (c) toolgate without tunnel auth (the figures of earlier runs were taken so), and (d) a second
# toolgate on its own ports and data dir with OAuth on tunnels, as it ships.
# The load comes from one address and one user at thousands of requests a second, far past the
# default rate limits (100 and 50 a second); they are raised out of the way rather than turned
# off, so that their cost is in the figures. The scale figure opens its 1,000 SSH connections
# from one address too, past the default 100. (Environment, not flags: a BASELINE build from
# before the limits ignores them.)
export TOOLGATE_RATE_PER_IP=1e9 TOOLGATE_RATE_PER_USER=1e9 TOOLGATE_MAX_CONNECTIONS_PER_IP=100000
start toolgate "$work/toolgate" serve --data-dir "$work/tg" --https-listen "127.0.0.1:$HTTPS" \
  --ssh-listen "127.0.0.1:$SSHP" --admin-listen "127.0.0.1:$ADMIN" --log-level warn --tunnel-auth none
tg_pid=${pids[-1]}
auth_d=oauth
[ -n "${BASELINE:-}" ] && auth_d=none
start toolgate-oauth "${BASELINE:-$work/toolgate}" serve --data-dir "$work/tg-d" --https-listen "127.0.0.1:$HTTPS_D" \
  --ssh-listen "127.0.0.1:$SSHP_D" --admin-listen "127.0.0.1:$ADMIN_D" --log-level warn --tunnel-auth "$auth_d"
tgd_pid=${pids[-1]}
for port in "$ADMIN" "$ADMIN_D"; do
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { exec 3>&- 3<&-; break; }
    sleep 0.1
  done
done
ca=$work/tg/ca.pem
ca_d=$work/tg-d/ca.pem
for _ in $(seq 50); do [ -s "$ca" ] && [ -s "$ca_d" ] && break; sleep 0.1; done
# Each toolgate has a CA of its own; bench gets both in one file.
cat "$ca" "$ca_d" >"$work/ca-both.pem"
ssh-keygen -q -t ed25519 -N "" -f "$work/key-load"
ssh-keygen -q -t ed25519 -N "" -f "$work/key-setup"
ssh-keygen -q -t ed25519 -N "" -f "$work/key-oauth"
# toolgate accepts linked keys only: link each to a user of its own, as an operator would. Not
# one user for both: a person gets the same random name back for the same -R, so the setup
# client would find the load client's tunnel already up.
for k in key-load key-setup; do
  "$work/toolgate" user add --data-dir "$work/tg" "$k@bench.test" >/dev/null
  "$work/toolgate" key add --data-dir "$work/tg" --user "$k@bench.test" "$work/$k.pub" >/dev/null
done
# (d)'s load key, linked on (d): its user owns the tunnel, and only the owner's tokens pass.
"$work/toolgate" user add --data-dir "$work/tg-d" "key-oauth@bench.test" >/dev/null
"$work/toolgate" key add --data-dir "$work/tg-d" --user "key-oauth@bench.test" "$work/key-oauth.pub" >/dev/null
sshopts=(-F /dev/null -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no
  -o UserKnownHostsFile=/dev/null -o ExitOnForwardFailure=yes -o LogLevel=ERROR)
# ssh -N prints nothing, so learn each key's random name once with -T; toolgate gives the same
# key and the same -R the same name back, which the -N clients below then get.
host_load=$("$lg" name -- ssh "${sshopts[@]}" -i "$work/key-load" -p "$SSHP" -T -R "0:127.0.0.1:$LOCAL" bench@127.0.0.1)
host_setup=$("$lg" name -- ssh "${sshopts[@]}" -i "$work/key-setup" -p "$SSHP" -T -R "0:127.0.0.1:$LOCAL" bench@127.0.0.1)
host_d=$("$lg" name -- ssh "${sshopts[@]}" -i "$work/key-oauth" -p "$SSHP_D" -T -R "0:127.0.0.1:$LOCAL" bench@127.0.0.1)
start ssh-load ssh "${sshopts[@]}" -i "$work/key-load" -p "$SSHP" -N -R "0:127.0.0.1:$LOCAL" bench@127.0.0.1
ssh_load_pid=${pids[-1]}
start ssh-oauth ssh "${sshopts[@]}" -i "$work/key-oauth" -p "$SSHP_D" -N -R "0:127.0.0.1:$LOCAL" bench@127.0.0.1
ssh_d_pid=${pids[-1]}
"$lg" wait -url "https://$host_load:$HTTPS/mcp" -ca "$ca"
"$lg" wait -url "http://127.0.0.1:$PUBLIC/mcp"
# (d): without a token a live tunnel answers 401 (404 or 502 while it is not up). Then a token
# as the tunnel's owner would get one: sign-in link, consent, code with PKCE. Its resource is
# the tunnel's origin, not .../mcp, so that it also covers the bulk and SSE paths (a token
# for https://HOST/mcp covers /mcp and below only). Access tokens live an hour by default.
token_d=
if [ "$auth_d" = oauth ]; then
  "$lg" wait -url "https://$host_d:$HTTPS_D/mcp" -ca "$ca_d" -status 401
  token_d=$("$lg" token -apex "https://toolgate.localhost:$HTTPS_D" -dial "127.0.0.1:$HTTPS_D" -ca "$ca_d" \
    -admin-socket "$work/tg-d/admin.sock" -email key-oauth@bench.test -resource "https://$host_d:$HTTPS_D")
fi
"$lg" wait -url "https://$host_d:$HTTPS_D/mcp" -ca "$ca_d" ${token_d:+-token "$token_d"}
# CPU accounting: the processes that carry (b) (sshd: listener and per-connection processes;
# the ssh client), (c) and (d) (each toolgate and its ssh client).
sshd_pids=""
[ -n "$ref_key" ] && [ -s "$(dirname "$ref_key")/sshd.pid" ] && sshd_pids=$(descendants "$(cat "$(dirname "$ref_key")/sshd.pid")" | joined)
cpu_b="$sshd_pids${ref_ssh:+,$ref_ssh}"
cpu_c="$tg_pid,$ssh_load_pid"
cpu_d="$tgd_pid,$ssh_d_pid"
ours="$backend_pid,$ref_pid,$cpu_b,$cpu_c,$cpu_d"
echo "== (a) http://127.0.0.1:$LOCAL  (b) http://127.0.0.1:$PUBLIC via sshd :$SSHD_PORT  (c) https://$host_load:$HTTPS via toolgate ssh :$SSHP"
echo "   (d) https://$host_d:$HTTPS_D via toolgate ssh :$SSHP_D, tunnel auth $auth_d${BASELINE:+, baseline build $BASELINE}"

# --- interleaved rounds ---------------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS"
  echo "   load average $(cut -d' ' -f1-3 /proc/loadavg)"
  "$lg" bench -round "$r" -d "$DURATION" -warm "$WARM" -sse "$SSE_SAMPLES" -ca "$work/ca-both.pem" -out "$res" \
    -cpu "b=$cpu_b" -cpu "c=$cpu_c" -cpu "d=$cpu_d" -ours "$ours" ${token_d:+-auth "d=$token_d"} \
    -target "a=http://127.0.0.1:$LOCAL" -target "b=http://127.0.0.1:$PUBLIC" -target "c=https://$host_load:$HTTPS" \
    -target "d=https://$host_d:$HTTPS_D"
  # The same small POSTs from wrk, which leaves more of the two cores to the paths under test.
  if [ "$have_wrk" = 1 ]; then
    "$lg" wrk -round "$r" -d "$DURATION" -out "$res" -cpu "b=$cpu_b" -cpu "c=$cpu_c" \
      -target "a=http://127.0.0.1:$LOCAL" -target "b=http://127.0.0.1:$PUBLIC" -target "c=https://$host_load:$HTTPS"
  fi
  setup_b() {
    [ -n "$ref_key" ] || return 0
    "$lg" setup -path b -round "$r" -url "http://127.0.0.1:$SETUP_PUBLIC/mcp" -out "$res" -- \
      ssh "${sshopts[@]}" -i "$ref_key" -p "$SSHD_PORT" -N -R "$SETUP_PUBLIC:127.0.0.1:$LOCAL" "$(id -un)@127.0.0.1"
  }
  setup_c() {
    "$lg" setup -path c -round "$r" -url "https://$host_setup:$HTTPS/mcp" -ca "$ca" -out "$res" -- \
      ssh "${sshopts[@]}" -i "$work/key-setup" -p "$SSHP" -N -R "0:127.0.0.1:$LOCAL" bench@127.0.0.1
  }
  if [ $((r % 2)) = 1 ]; then setup_b; setup_c; else setup_c; setup_b; fi
done

# --- scale: a fresh toolgate, 1,000 x/crypto clients each holding one tunnel ----------------------
echo "== scale: $SCALE_N idle tunnels on a fresh toolgate"
stop "$ssh_load_pid"
stop "$tg_pid"
stop "$ssh_d_pid"
stop "$tgd_pid"
start toolgate-scale "$work/toolgate" serve --data-dir "$work/tg-scale" --https-listen "127.0.0.1:$HTTPS2" \
  --ssh-listen "127.0.0.1:$SSHP2" --admin-listen "127.0.0.1:$ADMIN2" --log-level warn
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$ADMIN2") 2>/dev/null && { exec 3>&- 3<&-; break; }
  sleep 0.1
done
sleep 1
"$lg" scale -ssh "127.0.0.1:$SSHP2" -admin "127.0.0.1:$ADMIN2" -admin-socket "$work/tg-scale/admin.sock" \
  -n "$SCALE_N" -par 8 -out "$res"

echo
echo "== results"
{
  "$lg" report -in "$res"
} | tee "$work/table.md"
