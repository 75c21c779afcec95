# Shared by the host halves of the benchmarks (scripts/bench/*): one rig
# run, its progress, the medians. Source it after scripts/lib/common.sh;
# do not run it.
# shellcheck shell=bash

# bench_in_rig RIG_RUN_ARGS...
# Runs scripts/rig/run with RIG_RUN_ARGS (options, the L1 script and its
# arguments), shows the benchmark's lines as they come (@@BENCH, the
# "    |" detail under them, "bench:" notes; the rest of L1's console is
# noise here), then prints the medians per VMM and the ratios of gureum
# to the others (medians.awk, or the awk file in scripts/bench the
# caller names in bench_summary). Returns the rig's exit code. Sets the
# EXIT trap (to remove its copy of the console).
bench_in_rig() {
  local rc=0
  bench_console=$(mktemp)
  trap 'rm -f "$bench_console"' EXIT
  "$GUREUM_ROOT/scripts/rig/run" "$@" \
    | tee "$bench_console" | grep --line-buffered -E '^@@BENCH|^    \||^bench:' >&2 || rc=${PIPESTATUS[0]}
  awk -f "$GUREUM_ROOT/scripts/bench/failures.awk" \
    -f "$GUREUM_ROOT/scripts/bench/${bench_summary:-medians.awk}" "$bench_console"
  if (( rc != 0 )); then
    # The whole console, for what the filtered lines do not show (an L1
    # kernel panic, a guest's last words).
    mkdir -p "$GUREUM_TARGET/bench"
    cp "$bench_console" "$GUREUM_TARGET/bench/last-failed-console.log"
    log "benchmark incomplete (rig exit $rc); see the @@BENCH-FAIL lines above and" \
      "$GUREUM_TARGET/bench/last-failed-console.log"
  fi
  return "$rc"
}

# The host benchmarks with stand-in instances (imds, elb) share what
# follows. They set `work` (a scratch directory) and `prefix` (their
# namespaces' names) and export GUREUM_STATE_DIR and GUREUM_NET_PREFIX
# first; their EXIT trap calls stand_in_cleanup.
daemon_pid=

# start_daemon GUREUM: `gureum daemon` (no endpoint) in the background,
# its PID in daemon_pid; returns once it answers.
start_daemon() {
  local n
  "$1" daemon --listen off --reconcile-every 30 >"$work/daemon.log" 2>&1 </dev/null &
  daemon_pid=$!
  for ((n = 0; n < 200; n++)); do
    "$1" daemon --check >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "the daemon never answered: $(cat "$work/daemon.log")"
}

# import_stand_in_image GUREUM: image "bench", a bzImage header whose
# kernel the VMM refuses, so its instances end stopped with their port.
import_stand_in_image() {
  mkdir -p "$work/image"
  python3 - "$work/image" <<'PY'
import struct, sys
d = sys.argv[1]
k = bytearray(8192)
k[0x1f1] = 4
k[0x1f4:0x1f8] = struct.pack("<I", (8192 - 5 * 512) // 16)
k[0x1fe:0x200] = b"\x55\xaa"
k[0x202:0x206] = b"HdrS"
k[0x206:0x208] = struct.pack("<H", 0x020F)
k[0x236:0x238] = struct.pack("<H", 1)
open(f"{d}/vmlinuz", "wb").write(k)
open(f"{d}/initrd.cpio.gz", "wb").write(b"initrd")
open(f"{d}/manifest", "w").write("name=bench\ndescription=bench\narch=x86_64\nkernel=vmlinuz\n"
    "initrd=initrd.cpio.gz\ncmdline=console=ttyS0\nmin_memory_mib=128\n")
PY
  "$1" image import "$work/image" >/dev/null
}

# stand_in GUREUM NAME RUN_ARGS...: runs a stopped instance of the
# stand-in image and puts namespace $prefix$NAME on its port (a veth
# with its tap's name, MAC and address, the router as default route).
# Prints the instance's ID and address.
stand_in() {
  local gureum=$1 name=$2 id vpc tap mac address
  shift 2
  id=$("$gureum" run --image bench "$@" 2>/dev/null) || true
  [[ $id == i-* ]] || die "no instance was made for $name"
  "$gureum" instance wait "$id" --state stopped >/dev/null
  read -r vpc tap mac address < <("$gureum" instance describe "$id" -o json |
    python3 -c 'import json,sys; p=json.load(sys.stdin)[0]["placement"]; print(p["vpc_id"], p["tap"], p["mac"], p["private_ip"])')
  local ns=$prefix$name
  ip netns add "$ns"
  ip -n "$prefix$vpc" link del "$tap"
  ip -n "$prefix$vpc" link add "$tap" type veth peer name eth0 netns "$ns"
  ip -n "$ns" link set eth0 address "$mac"
  ip -n "$ns" addr add "$address/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via "${address%.*}.1"
  printf '%s %s\n' "$id" "$address"
}

# stand_in_cleanup: ends the daemon, deletes the namespaces with the
# prefix (the daemon's and the stand-ins'), removes the scratch directory.
stand_in_cleanup() {
  local ns
  if [[ -n $daemon_pid ]]; then
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  for ns in /run/netns/"$prefix"*; do
    [[ -e $ns ]] && ip netns del "${ns##*/}"
  done
  rm -rf "$work"
}
