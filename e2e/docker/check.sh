#!/usr/bin/env bash
# check.sh: build the Dockerfile and check the image it makes, without a Docker engine.
#
# podman builds the image (Dockerfile as is, both stages), then the container runs as the image
# says (its user, environment, entrypoint and /data volume) with the real OpenSSH client
# opening a tunnel through it. Checked:
#   - the build succeeds, and the binary in the image is statically linked;
#   - a new volume at /data is created from the image and belongs to nonroot (65532);
#   - toolgate runs as 65532:65532, starts from the image's environment alone, and keeps its
#     database, CA and admin socket in /data;
#   - `ssh -R` through the container gives a tunnel that answers over HTTPS (401: tunnels
#     need an OAuth token by default), trusting the CA from the volume;
#   - SIGTERM to the container's process 1 stops it cleanly, and a second container on the
#     same volume serves with the same CA and gives the same key its tunnel name back.
#
# Base images: when they can't be pulled (this workplace reaches no container registry), set
# STANDIN=1 and the script builds stand-ins under the same names first: golang:1.26-bookworm
# from debootstrap plus the Go toolchain at /usr/local/go, and distroless/static-debian12:nonroot
# as the files that image holds (passwd and group with nonroot 65532, CA bundle, /tmp,
# /home/nonroot; user 65532). The stand-ins check the Dockerfile, not the real images.
#
# Where the container runtime may not set resource limits (some sandboxes refuse setrlimit),
# RUNC_BUNDLE=1 starts the created container with runc directly, from podman's own OCI spec
# minus its rlimits.
#
#   sudo e2e/docker/check.sh                        # real base images (pulled)
#   sudo STANDIN=1 RUNC_BUNDLE=1 e2e/docker/check.sh
#
# Needs root, podman and openssh-client; STANDIN=1 also debootstrap; RUNC_BUNDLE=1 also runc
# and python3. Everything listens on loopback (host network, loopback addresses).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
for c in podman ssh ssh-keygen curl go; do
  command -v "$c" >/dev/null || { echo "check.sh: $c not found" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "check.sh: run as root (podman, volumes)" >&2; exit 2; }

work=$(mktemp -d /tmp/toolgate-docker.XXXXXX)
name=toolgate-check-$$
vol=toolgate-check-$$
image=localhost/toolgate:check
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  runc kill "$name" KILL 2>/dev/null || true
  runc delete -f "$name" 2>/dev/null || true
  podman umount "$name" >/dev/null 2>&1 || true
  podman rm -fv "$name" >/dev/null 2>&1 || true
  podman volume rm -f "$vol" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# --- stand-in base images ---------------------------------------------------------------------
if [ "${STANDIN:-0}" = 1 ]; then
  command -v debootstrap >/dev/null || { echo "check.sh: STANDIN=1 needs debootstrap" >&2; exit 2; }
  echo "== stand-in golang:1.26-bookworm (debootstrap bookworm + $(go version | cut -d' ' -f3))"
  root=$work/golang
  debootstrap --variant=minbase --include=ca-certificates,git bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
  cp -a "$(go env GOROOT)" "$root/usr/local/go"
  # The host's bundle, so that the build stage trusts what the host trusts (a proxy's CA, say).
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV GOPATH=/go' --change 'ENV GOTOOLCHAIN=local' --change 'WORKDIR /go' \
    - docker.io/library/golang:1.26-bookworm >/dev/null
  echo "== stand-in gcr.io/distroless/static-debian12:nonroot"
  root=$work/static
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot" "$root/root"
  chmod 1777 "$root/tmp"
  chmod 700 "$root/home/nonroot" "$root/root"
  chown 65532:65532 "$root/home/nonroot"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$root/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  tar -C "$root" -c . | podman import --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
    - gcr.io/distroless/static-debian12:nonroot >/dev/null
  pull=--pull=never
else
  pull=--pull=missing
fi

# --- build ------------------------------------------------------------------------------------
echo "== podman build (the Dockerfile as is)"
# A clean clone: what a user builds, without this checkout's untracked files.
git clone -q "$repo" "$work/src"
# chroot isolation runs the RUN steps without an OCI runtime or cgroups; host network, because
# the build stage downloads modules.
podman build $pull --isolation chroot --network host -t "$image" "$work/src" >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; fail "podman build"; }
ok "image built"
podman create --name "$name" "$image" >/dev/null
mnt=$(podman mount "$name")
bin=$mnt/usr/local/bin/toolgate
[ -x "$bin" ] || fail "no /usr/local/bin/toolgate in the image"
if command -v file >/dev/null; then
  file "$bin" | grep -q 'statically linked' || fail "not static: $(file "$bin")"
else
  ! grep -q 'ld-linux' "$bin" || fail "the binary names a dynamic loader"
fi
ok "static binary"
podman umount "$name" >/dev/null
podman rm -v "$name" >/dev/null

# --- run --------------------------------------------------------------------------------------
go build -o "$work/loadgen" ./e2e/perf/loadgen
read -r https sshp admin local < <("$work/loadgen" freeports -n 4)
"$work/loadgen" backend -listen "127.0.0.1:$local" >"$work/backend.log" 2>&1 &
pids+=($!)
podman volume create "$vol" >/dev/null
voldir=$(podman volume inspect -f '{{.Mountpoint}}' "$vol")

pid1=""
run_container() { # start the container, detached; sets pid1
  podman rm -fv "$name" >/dev/null 2>&1 || true
  # Only the listen addresses change, to loopback ports: everything else is the image's.
  podman create --name "$name" --network host -v "$vol:/data" \
    -e "TOOLGATE_HTTPS_LISTEN=127.0.0.1:$https" -e "TOOLGATE_SSH_LISTEN=127.0.0.1:$sshp" \
    -e "TOOLGATE_ADMIN_LISTEN=127.0.0.1:$admin" "$image" >/dev/null
  if [ "${RUNC_BUNDLE:-0}" = 1 ]; then
    command -v runc >/dev/null || fail "RUNC_BUNDLE=1 needs runc"
    # podman writes the OCI spec when it starts a container; let it try (it fails where
    # setrlimit is refused), then run that spec with runc, minus rlimits, cgroups and hooks.
    podman start "$name" >/dev/null 2>&1 || true
    local rootfs
    rootfs=$(podman mount "$name")
    mkdir -p "$work/bundle"
    python3 - "$(podman inspect -f '{{.OCIConfigPath}}' "$name")" "$rootfs" "$work/bundle/config.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["process"].pop("rlimits", None)
spec["process"]["terminal"] = False
spec["root"]["path"] = sys.argv[2]
spec.get("linux", {}).pop("cgroupsPath", None)
spec.pop("hooks", None)
json.dump(spec, open(sys.argv[3], "w"))
PY
    runc delete -f "$name" 2>/dev/null || true
    runc run -d -b "$work/bundle" --pid-file "$work/pid1" "$name" >"$work/run.log" 2>&1 </dev/null ||
      { cat "$work/run.log" >&2; fail "runc run"; }
    pid1=$(cat "$work/pid1")
  else
    podman start "$name" >/dev/null || fail "podman start"
    pid1=$(podman inspect -f '{{.State.Pid}}' "$name")
  fi
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  container_logs >&2
  fail "no /readyz within 10 s"
}
container_logs() {
  if [ "${RUNC_BUNDLE:-0}" = 1 ]; then cat "$work/run.log"; else podman logs "$name"; fi
}

echo "== run"
run_container
ok "serving (/readyz)"
[ "$(awk '/^Uid:/ {print $2}' "/proc/$pid1/status")" = 65532 ] || fail "process 1 is not uid 65532"
[ "$(awk '/^Gid:/ {print $2}' "/proc/$pid1/status")" = 65532 ] || fail "process 1 is not gid 65532"
ok "runs as 65532:65532"
[ "$(stat -c %u:%g "$voldir")" = 65532:65532 ] || fail "/data belongs to $(stat -c %u:%g "$voldir")"
for f in toolgate.db ca.pem admin.sock; do
  [ -e "$voldir/$f" ] || fail "no $f in the volume"
done
ok "/data volume belongs to nonroot and holds toolgate.db, ca.pem, admin.sock"

ssh-keygen -q -t ed25519 -N "" -f "$work/key"
# The operator's commands run in the container, as README's `docker exec toolgate toolgate ...`:
# the image's binary, user and environment, through /data/admin.sock.
cexec() {
  if [ "${RUNC_BUNDLE:-0}" = 1 ]; then runc exec "$name" "$@"; else podman exec "$name" "$@"; fi
}
cexec toolgate user add dev@check.test >/dev/null || fail "toolgate user add in the container"
cexec toolgate key add --user dev@check.test "$(cat "$work/key.pub")" >/dev/null || fail "toolgate key add in the container"
ok "operator commands in the container (user add, key add)"
sshopts=(-F /dev/null -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no
  -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -i "$work/key" -p "$sshp")
tunnel() { # open ssh -N -R and wait for the tunnel to answer; prints the HTTP status
  ssh "${sshopts[@]}" -N -R "check:0:127.0.0.1:$local" dev@127.0.0.1 >"$work/ssh.log" 2>&1 &
  pids+=($!)
  local code=000
  for _ in $(seq 100); do
    code=$(curl -s -o "$work/body" -w '%{http_code}' --cacert "$voldir/ca.pem" \
      --resolve "check.toolgate.localhost:$https:127.0.0.1" -X POST -H 'Content-Type: application/json' \
      -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping"}}' \
      "https://check.toolgate.localhost:$https/mcp" || true)
    [ "$code" = 401 ] && break
    sleep 0.1
  done
  echo "$code"
}
[ "$(tunnel)" = 401 ] || { cat "$work/ssh.log" "$work/body" >&2; fail "the tunnel did not answer 401"; }
grep -q 'OAuth access token' "$work/body" || fail "unexpected 401 body: $(cat "$work/body")"
ok "ssh -R through the container: https://check.toolgate.localhost:$https/mcp answers 401 (token needed)"
ca_before=$(sha256sum <"$voldir/ca.pem")

echo "== SIGTERM and a second container on the same volume"
kill -TERM "$pid1"
for _ in $(seq 100); do kill -0 "$pid1" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$pid1" 2>/dev/null || fail "still running 10 s after SIGTERM"
container_logs | grep -q '"server shutting down"\|stopped' || { container_logs >&2; fail "no clean stop in the log"; }
ok "SIGTERM stops it cleanly"
for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
run_container
[ "$(sha256sum <"$voldir/ca.pem")" = "$ca_before" ] || fail "the CA changed across restarts"
[ "$(tunnel)" = 401 ] || { cat "$work/ssh.log" >&2; fail "the tunnel name did not come back after the restart"; }
ok "restart: same CA, and the key gets check.toolgate.localhost back"
echo "PASS"
