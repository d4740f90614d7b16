#!/usr/bin/env bash
# Prove the README's two commands on a machine with nothing of ours installed.
#
#   scripts/fresh-check.sh [demo] [ci]    # both by default, each in a brand-new container
#   scripts/fresh-check.sh machine        # only make one (fc-machine) and leave it running
#   scripts/fresh-check.sh stop           # stop the outer LXD daemon (and its containers)
#
# Each command runs as root in a brand-new LXD machine container made from a Debian
# bookworm minbase rootfs (debootstrap) plus only what the README assumes a machine has:
# ca-certificates, git and python3 with venv. Like our VMs it has no systemd: its PID 1
# mounts the cgroup hierarchies as the host has them and reaps orphans (fresh-init below). No package of ours, no
# ~/.cache/overcloud (the node image is built from nothing), no pip cache. Inside, a clean
# `git clone` of this checkout's HEAD (commit first: the work tree is not copied), then
#   demo: ./scripts/demo.sh, then ./scripts/demo.sh stop
#   ci:   CI=true bash .ci/run   (stdin closed, as CI runs it)
# and a PASS/FAIL line with the duration of each. Logs: $FC_DIR/runs/<stamp>/.
#
# The containers run on an LXD daemon of this script's own (LXD_DIR=$FC_DIR/lxd, bridge
# ocfc0 on 10.250.0.1/24 with NAT to reach the Debian mirror and PyPI, a `dir` pool), never
# the test suite's or a user's; everything in that daemon is ours, so a run first deletes
# whatever an interrupted run left there. It is privileged with security.nesting (nested
# LXD, Docker, btrfs on loop files and nftables need real root): see docs/FRESH-CHECK.md for
# what that does and does not prove. Only the pid recorded in $FC_DIR/lxd.pid is signalled.
#
# Needs root, ~15 GB of disk under $FC_DIR, and a long time: image build + the whole suite
# in a nested container on 2 cores. Run it in the background and follow the log.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
FC_DIR=${FC_DIR:-/var/tmp/overcloud-fresh-check}
BRIDGE=${FC_BRIDGE:-ocfc0}
GATEWAY=${FC_GATEWAY:-10.250.0.1}
SUITE=bookworm
MIRROR=${FC_MIRROR:-http://deb.debian.org/debian}
BASE_INCLUDE="ca-certificates,git,python3,python3-venv"
NO_EGRESS_PROXY=http://127.0.0.1:9  # as overcloud/services/lxd.py: LXD itself fetches nothing
export LXD_DIR=$FC_DIR/lxd LXD_CONF=$FC_DIR/client
PIDFILE=$FC_DIR/lxd.pid

say() { printf '[fresh-check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "error: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (it starts an LXD daemon and privileged containers)"

our_pid() {  # the recorded pid, only while it is still our lxd (pid reuse, stale files)
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/environ" ] || return 1
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/bin/lxd ] || return 1
  tr '\0' '\n' < "/proc/$pid/environ" | grep -qx "LXD_DIR=$LXD_DIR" || return 1
  echo "$pid"
}

stop_daemon() {
  local pid
  if pid=$(our_pid); then
    say "stopping our LXD daemon (pid $pid)"
    lxc stop --all --force >/dev/null 2>&1 || true
    lxd shutdown --timeout 60 >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill "$pid"
  fi
  rm -f "$PIDFILE"
}

if [ "${1:-}" = stop ]; then
  stop_daemon
  exit 0
fi
COMMANDS=("$@")
[ ${#COMMANDS[@]} -gt 0 ] || COMMANDS=(demo ci)
for c in "${COMMANDS[@]}"; do
  case "$c" in demo|ci|machine) ;; *) die "unknown command '$c' (demo, ci, machine or stop)";; esac
done
git -C "$REPO" diff --quiet HEAD -- 2>/dev/null ||
  say "note: uncommitted changes are not part of the check (it clones HEAD $(git -C "$REPO" rev-parse --short HEAD))"

# -- tools of this harness on the host (not the machine under test) ----------------------------
need=()
for p in lxd lxd-client dnsmasq-base debootstrap nftables iproute2 git; do
  dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} on this host (for the harness)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$FC_DIR" "$LXD_DIR" "$LXD_CONF"
lxc remote list >/dev/null 2>&1 || true  # lxc's first-use banner, once, to nowhere
chmod 711 "$LXD_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RUN=$FC_DIR/runs/$STAMP
mkdir -p "$RUN"

# -- the outer LXD daemon ------------------------------------------------------------------------
if ! our_pid >/dev/null; then
  rm -f "$PIDFILE"
  [ ! -S "$LXD_DIR/unix.socket" ] || ! lxc info >/dev/null 2>&1 ||
    die "an LXD daemon we have no pid for serves $LXD_DIR; stop it (LXD_DIR=$LXD_DIR lxd shutdown)"
  say "starting our LXD daemon (LXD_DIR=$LXD_DIR)"
  HTTPS_PROXY=$NO_EGRESS_PROXY HTTP_PROXY=$NO_EGRESS_PROXY NO_PROXY=127.0.0.1,localhost \
    setsid lxd --group root --logfile "$FC_DIR/lxd.log" </dev/null >>"$FC_DIR/lxd.out" 2>&1 &
  echo $! > "$PIDFILE"
  lxd waitready --timeout 60 || die "our LXD daemon did not start: $FC_DIR/lxd.log"
fi
# explicit subnet (never `lxd init --auto`), NAT to the uplink, `dir` pool; idempotent
lxd init --preseed >/dev/null <<EOF
config:
  core.proxy_https: $NO_EGRESS_PROXY
  core.proxy_http: $NO_EGRESS_PROXY
  images.auto_update_interval: "0"
networks:
- name: $BRIDGE
  type: bridge
  config:
    ipv4.address: $GATEWAY/24
    ipv4.nat: "true"
    ipv6.address: none
storage_pools:
- name: fc
  driver: dir
profiles:
- name: default
  devices:
    eth0: {name: eth0, network: $BRIDGE, type: nic}
    root: {path: /, pool: fc, type: disk}
EOF
for c in $(lxc list --format csv -c n); do  # leftovers of an interrupted run: all ours
  say "deleting the leftover container $c"
  lxc delete --force "$c" >/dev/null 2>&1 || say "(could not delete $c: $(lxc list "$c" -c s --format csv))"
done

# -- the fresh machine's image: minbase + ca-certificates, git, python3-venv ----------------------
MINBASE=$FC_DIR/minbase-$(printf '%s\n' "$SUITE" "$MIRROR" "$BASE_INCLUDE" | sha256sum | cut -c1-12).tar
KEY=$(cat "$0" /etc/apt/sources.list.d/debian.sources /etc/pip.conf 2>/dev/null | sha256sum | cut -c1-12)
ALIAS=fresh-$KEY  # a new image whenever this script or the machine's apt/pip settings change
if ! lxc image info "$ALIAS" >/dev/null 2>&1; then
  B=$FC_DIR/build-$KEY
  rm -rf "$B"
  mkdir -p "$B/rootfs"
  R=$B/rootfs
  if [ ! -s "$MINBASE" ]; then
    say "debootstrap minbase $SUITE + $BASE_INCLUDE"
    debootstrap --variant=minbase --include="$BASE_INCLUDE" "$SUITE" "$R" "$MIRROR" \
      >"$B/debootstrap.log" 2>&1 || die "debootstrap failed: $B/debootstrap.log"
    tar --numeric-owner -C "$R" -cf "$MINBASE.tmp" . && mv "$MINBASE.tmp" "$MINBASE"
  else
    tar --numeric-owner -C "$R" -xf "$MINBASE"
  fi
  say "making the fresh machine's image $ALIAS"
  # what every machine of ours has beyond the packages: the same apt sources and settings,
  # apt that does not start daemons (policy-rc.d), and the same pip configuration
  rm -f "$R/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/debian.sources "$R/etc/apt/sources.list.d/"
  for f in /etc/apt/apt.conf.d/*; do  # the machine's own settings, not a package's
    dpkg -S "$f" >/dev/null 2>&1 || cp "$f" "$R/etc/apt/apt.conf.d/"
  done
  [ ! -e /usr/sbin/policy-rc.d ] || cp /usr/sbin/policy-rc.d "$R/usr/sbin/policy-rc.d"
  [ ! -e /etc/pip.conf ] || cp /etc/pip.conf "$R/etc/pip.conf"
  # ... and the same TLS trust: the CA bundle and any certificate no package installed there
  cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
  for f in /etc/ssl/certs/*.pem /usr/local/share/ca-certificates/*; do
    if [ -f "$f" ] && [ ! -L "$f" ] && ! dpkg -S "$f" >/dev/null 2>&1; then
      mkdir -p "$(dirname "$R$f")"
      cp "$f" "$R$f"
    fi
  done
  [ ! -d /etc/xdg/pip ] || { mkdir -p "$R/etc/xdg"; cp -r /etc/xdg/pip "$R/etc/xdg/"; }
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
  : > "$R/etc/machine-id"
  echo fresh > "$R/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 fresh\n' > "$R/etc/hosts"
  # PID 1: our VMs run no systemd; their init mounts the cgroup hierarchies (v1 controllers
  # one by one, v2 at unified) and nothing else. LXD leaves that to a nested container's
  # init, and systemd would mount them its own way (cpu,cpuacct together: not our kernel's)
  cat > "$R/sbin/fresh-init" <<'PY'
#!/usr/bin/python3
"""PID 1 of a fresh-check machine: mount the cgroup hierarchies this kernel has, the way
our VMs have them, then reap orphaned processes until the container is stopped."""
import os
import signal
import subprocess

def mount(fstype: str, opts: str, target: str) -> None:
    os.makedirs(target, exist_ok=True)
    subprocess.run(["mount", "-t", fstype, "-o", opts, fstype, target], check=True)

mount("tmpfs", "mode=755,nosuid,nodev,noexec", "/sys/fs/cgroup")
with open("/proc/self/cgroup") as f:
    for line in f:
        num, controllers, _ = line.rstrip("\n").split(":", 2)
        if num == "0":
            mount("cgroup2", "nosuid,nodev,noexec", "/sys/fs/cgroup/unified")
        else:
            mount("cgroup", controllers, "/sys/fs/cgroup/" + controllers.removeprefix("name="))
mount("tmpfs", "mode=1777,nosuid,nodev", "/dev/shm")  # POSIX shared memory, semaphores
os.makedirs("/run/lock", exist_ok=True)
signal.signal(signal.SIGPWR, lambda *_: os._exit(0))  # `lxc stop`
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    signal.sigwait({signal.SIGCHLD})
PY
  chmod 755 "$R/sbin/fresh-init"
  rm -f "$R/etc/resolv.conf"
  echo "nameserver $GATEWAY" > "$R/etc/resolv.conf"  # the bridge's dnsmasq
  printf 'architecture: x86_64\ncreation_date: %s\nproperties:\n  description: fresh %s (%s)\n' \
    "$(date +%s)" "$SUITE" "$BASE_INCLUDE" > "$B/metadata.yaml"
  tar -C "$B" -czf "$B/meta.tar.gz" metadata.yaml
  tar --numeric-owner -C "$R" -cf "$B/rootfs.tar" .
  lxc image import "$B/meta.tar.gz" "$B/rootfs.tar" --alias "$ALIAS" >/dev/null
  rm -rf "$B"
fi
for a in $(lxc image alias list --format csv | cut -d, -f1); do  # images of older versions
  [ "$a" = "$ALIAS" ] || lxc image delete "$a"
done

# -- the project, as a clean clone of HEAD ----------------------------------------------------------
git -C "$REPO" bundle create "$RUN/repo.bundle" HEAD >/dev/null 2>&1
HEAD_SHA=$(git -C "$REPO" rev-parse HEAD)

PIP_ENV=()
while IFS= read -r kv; do PIP_ENV+=(--env "$kv"); done < <(env | grep '^PIP_' || true)
mounts=()
for d in /opt/wheels /opt/pypi /opt/pypi-more; do  # the local package indexes pip.conf names
  [ -d "$d" ] && mounts+=("$d")
done

machine() {  # NAME ADDRESS: a brand-new, running machine container from the fresh image
  local name=$1 address=$2 i=0
  # its address set by LXC from outside (a VM's is set before anything of ours runs)
  lxc init "$ALIAS" "$name" \
    -c security.privileged=true -c security.nesting=true \
    -c raw.lxc="$(printf '%s\n' 'lxc.apparmor.profile = unconfined' \
        'lxc.cgroup.devices.allow = b 7:* rwm' 'lxc.cgroup.devices.allow = c 10:237 rwm' \
        'lxc.init.cmd = /sbin/fresh-init' \
        "lxc.net.0.ipv4.address = $address/24" "lxc.net.0.ipv4.gateway = $GATEWAY")" \
    >/dev/null
  for d in "${mounts[@]}"; do
    lxc config device add "$name" "opt$i" disk source="$d" path="$d" readonly=true >/dev/null
    i=$((i + 1))
  done
  lxc start "$name"
  for _ in $(seq 1 120); do
    lxc exec "$name" -- sh -c 'getent hosts deb.debian.org >/dev/null' 2>/dev/null && break
    sleep 1
  done
  lxc exec "$name" -- sh -c 'getent hosts deb.debian.org >/dev/null' ||
    { say "$name: no network after 120 s"; return 1; }
  # a VM has its loop devices in /dev; a container's /dev is a fresh tmpfs
  lxc exec "$name" -- sh -c '[ -e /dev/loop-control ] || mknod -m 660 /dev/loop-control c 10 237;
    for i in $(seq 0 127); do [ -e /dev/loop$i ] || mknod -m 660 /dev/loop$i b 7 $i; done'
  lxc file push "$RUN/repo.bundle" "$name/root/repo.bundle" >/dev/null
  lxc exec "$name" -- git clone -q /root/repo.bundle /root/overcloud
  [ "$(lxc exec "$name" -- git -C /root/overcloud rev-parse HEAD)" = "$HEAD_SHA" ]
}

RESULTS=()
FAILED=0
step() {  # NAME LABEL ENV... -- CMD...: run one README command in the container, timed, logged
  local name=$1 label=$2 log t0 secs rc=0
  shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=(--env "$1"); shift; done
  shift
  log=$RUN/$(printf '%s' "$label" | tr -c 'A-Za-z0-9.=\n' '-' | sed 's/^[-.]*//').log
  say "$label: running (log $log)"
  t0=$(date +%s)
  lxc exec "$name" --cwd /root/overcloud "${PIP_ENV[@]}" "${envs[@]}" -- "$@" </dev/null >"$log" 2>&1 ||
    rc=$?
  secs=$(( $(date +%s) - t0 ))
  local verdict=PASS
  [ "$rc" = 0 ] || { verdict="FAIL (exit $rc)"; FAILED=1; }
  RESULTS+=("$(printf '%-28s %-14s %3dm%02ds' "$label" "$verdict" $((secs / 60)) $((secs % 60)))")
  say "$label: $verdict in $((secs / 60))m$((secs % 60))s"
  [ "$rc" = 0 ] || tail -n 25 "$log" | sed 's/^/    | /'
  return "$rc"
}

collect() {  # what the machine had installed at the end, and the logs of what ran there
  local name=$1
  lxc exec "$name" -- dpkg-query -W -f '${Package}\n' > "$RUN/$name.packages" 2>/dev/null || true
  lxc exec "$name" -- sh -c 'cd / && tar -czf - --ignore-failed-read $(ls -d \
    var/lib/overcloud/log var/lib/overcloud/lxd/*/lxd.log root/.cache/overcloud/logs \
    2>/dev/null)' > "$RUN/$name-logs.tar.gz" 2>/dev/null || true
}

say "run $STAMP: HEAD $(git -C "$REPO" rev-parse --short HEAD), logs in $RUN"
for c in "${COMMANDS[@]}"; do
  name=fc-$c
  say "$c: a brand-new machine ($name from $ALIAS)"
  case "$c" in demo) host=10;; ci) host=11;; *) host=12;; esac
  if ! machine "$name" "${GATEWAY%.*}.$host" >"$RUN/$name-setup.log" 2>&1; then
    RESULTS+=("$(printf '%-28s %s' "$c: machine setup" "FAIL (see $name-setup.log)")")
    FAILED=1
    tail -n 20 "$RUN/$name-setup.log" | sed 's/^/    | /'
    continue
  fi
  case "$c" in
    machine)
      say "left running: LXD_DIR=$LXD_DIR LXD_CONF=$LXD_CONF lxc exec $name -- bash"
      say "when done: $0 stop"
      exit 0
      ;;
    demo)
      step "$name" "./scripts/demo.sh" -- ./scripts/demo.sh || true
      step "$name" "./scripts/demo.sh stop" -- ./scripts/demo.sh stop || true
      ;;
    ci)
      step "$name" "CI=true bash .ci/run" CI=true -- bash .ci/run || true
      ;;
  esac
  collect "$name"
  lxc delete --force "$name" >/dev/null 2>&1 || true
done
stop_daemon

echo
echo "fresh-check $STAMP, HEAD ${HEAD_SHA:0:7}, each command in a new $SUITE machine:"
for r in "${RESULTS[@]}"; do echo "  $r"; done
if [ "$FAILED" = 0 ]; then echo "PASS"; else echo "FAIL (logs: $RUN)"; fi
exit "$FAILED"
