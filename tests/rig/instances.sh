#!/bin/sh
# Instance lifecycle cases, run inside the nested KVM rig's L1 (busybox
# sh) by tests/rig_instances.rs: import the busybox image, run an
# instance detached, stop/start/reboot it (its guest shuts down on the
# ACPI power button), kill its VMM with SIGKILL, terminate it; stop a
# guest that ignores the button. Each case prints
#   @@CASE <name> BEGIN ... @@CASE <name> RC <0 if every check passed>
# with "@@FAIL <what>" for each failed check.
set -u
# The lifecycle needs no network: every launch says --no-network, else
# it would go to the default VPC (which needs nft, not shipped to this
# L1; tests/rig/vpc.sh proves VPC instances).
export GUREUM_STATE_DIR=/tmp/gureum-state
S=$GUREUM_STATE_DIR

. /rig/cases.sh

vmm_pid() { describe instance "$1" vmm.pid; }
vmm_processes() { ps | grep '[g]ureum boot' ; }
alive() { kill -0 "$1" 2>/dev/null; }
# Milliseconds since L1 booted.
uptime_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
# How often the guest of instance ID shut down on its power button, and
# how often its kernel powered off, by its console log.
shutdowns() { gureum instance logs "$1" | grep -c 'going down NOW! (ACPI power button)'; }
power_downs() { gureum instance logs "$1" | grep -c 'reboot: Power down'; }
# Stops instance ID with --timeout SECS (the command returns at once,
# stopping), waits until it is stopped, and shows how long that took and
# how it went.
timed_stop() {  # ID SECS
  local t0
  t0=$(uptime_ms)
  out=$(gureum instance stop "$1" --timeout "$2" 2>&1) || fail "stop: $out"
  echo "stop_printed=$out"
  gureum instance wait "$1" --state stopped --timeout $(($2 + 30)) 2>&1 || fail "never stopped"
  echo "stop_ms=$(($(uptime_ms) - t0))"
  echo "state=$(describe instance "$1" state)"
  echo "reason=$(describe instance "$1" state_reason)"
  echo "shutdowns=$(shutdowns "$1")"
}

begin_checks import
gureum image import /rig/guest 2>&1 || fail "image import"
gureum image list
gureum image describe busybox || fail "image describe"
end_checks import

begin_checks run
id=$(gureum run --no-network --image busybox --type t2.nano --name web-1 \
  --cmdline-append rig.scenario=idle --tag env=rig 2>&1)
echo "launched $id"
case $id in i-*) ;; *) fail "run printed '$id'" ;; esac
gureum instance wait "$id" --state running --timeout 120 || fail "never running"
wait_log "$id" @@IDLE 1 300 || fail "no @@IDLE on the console"
gureum instance logs "$id" | grep -q @@INIT || fail "no @@INIT in the logs"
[ -S "$S/instances/$id/run/console.sock" ] || fail "no console socket while running"
echo "state=$(describe instance "$id" state)"
gureum instance list --filter Name=web-1
end_checks run

begin_checks stop
pid=$(vmm_pid "$id")
echo "vmm pid $pid"
timed_stop "$id" 30
echo "power_downs=$(power_downs "$id")"
gureum instance logs "$id" | tail -n 8
alive "$pid" && fail "VMM $pid still runs after stop"
[ -e "$S/instances/$id/run" ] && fail "runtime files left after stop"
end_checks stop

begin_checks start
gureum instance start "$id" 2>&1 || fail "start"
gureum instance wait "$id" --state running --timeout 120 || fail "never running again"
wait_log "$id" @@IDLE 2 300 || fail "no second @@IDLE"
echo "state=$(describe instance "$id" state)"
echo "boots=$(describe instance "$id" boots)"
echo "crash_retries=$crash_retries"
end_checks start

begin_checks reboot
t0=$(uptime_ms)
out=$(gureum instance reboot "$id" --timeout 30 2>&1) || fail "reboot: $out"
echo "reboot_printed=$out"
wait_log "$id" @@IDLE 3 300 || fail "no @@IDLE after reboot"
echo "reboot_ms=$(($(uptime_ms) - t0))"
echo "state=$(describe instance "$id" state)"
echo "boots=$(describe instance "$id" boots)"
echo "crash_retries=$crash_retries"
echo "shutdowns=$(shutdowns "$id")"
end_checks reboot

begin_checks kill9
pid=$(vmm_pid "$id")
sup=$(describe instance "$id" supervisor.pid)
echo "vmm pid $pid supervisor pid $sup"
kill -9 "$pid" || fail "kill -9 $pid"
gureum instance wait "$id" --state stopped --timeout 60 || fail "not stopped after SIGKILL"
echo "state=$(describe instance "$id" state)"
echo "reason=$(describe instance "$id" state_reason)"
sleep 1
alive "$pid" && fail "VMM still runs"
alive "$sup" && fail "supervisor still runs"
[ -e "$S/instances/$id/run" ] && fail "runtime files left after SIGKILL"
vmm_processes && fail "a VMM process is left"
end_checks kill9

begin_checks terminate
# Running again, so that terminate has a VMM to end: it returns at once,
# shutting down, and `instance wait` sees it terminated.
gureum instance start "$id" 2>&1 || fail "start before terminate"
gureum instance wait "$id" --state running --timeout 120 || fail "never running before terminate"
out=$(gureum instance terminate "$id" --timeout 5 2>&1) || fail "terminate: $out"
echo "terminate_printed=$out"
gureum instance wait "$id" --state terminated --timeout 90 || fail "never terminated"
echo "state=$(describe instance "$id" state)"
# The supervisor removes the files right after it records the end.
n=0
while [ -e "$S/instances/$id" ] && [ $n -lt 10 ]; do sleep 1; n=$((n + 1)); done
[ -e "$S/instances/$id" ] && fail "instance files left after terminate"
vmm_processes && fail "a VMM process is left"
gureum instance list
end_checks terminate

# A guest that ignores its power button (no acpid) is killed after the
# stop's timeout, and its reason says so.
begin_checks deaf
id=$(gureum run --no-network --image busybox --type t2.nano --name deaf-1 \
  --cmdline-append rig.scenario=deaf 2>&1)
echo "launched $id"
gureum instance wait "$id" --state running --timeout 120 || fail "never running"
wait_log "$id" @@IDLE 1 300 || fail "no @@IDLE on the console"
timed_stop "$id" 5
gureum instance terminate "$id" >/dev/null 2>&1 || fail "terminate"
vmm_processes && fail "a VMM process is left"
end_checks deaf

# A guest that powers itself off, launched with the shutdown behavior
# terminate: the instance goes through shutting-down to terminated, and
# its files with it (EC2's InstanceInitiatedShutdownBehavior).
begin_checks shutdown-terminate
id=$(gureum run --no-network --image busybox --type t2.nano --name halt-1 \
  --instance-initiated-shutdown-behavior terminate --cmdline-append rig.scenario=halt 2>&1)
echo "launched $id"
until gureum instance wait "$id" --state terminated --timeout 240 >/dev/null 2>&1; do
  case $(describe instance "$id" state_reason) in
    *"guest crashed"*)
      [ -e /tmp/halt-retried ] && break
      touch /tmp/halt-retried
      echo "@@RETRY after a guest crash: $id"
      gureum instance start "$id" >/dev/null || break ;;
    *) break ;;
  esac
done
echo "state=$(describe instance "$id" state)"
echo "reason=$(describe instance "$id" state_reason)"
[ -e "$S/instances/$id" ] && fail "its files stayed: $(ls "$S/instances/$id")"
vmm_processes && fail "a VMM process is left"
end_checks shutdown-terminate

# Nested virtualization: a c8i instance with the option sees the CPU's
# SVM (or VMX), loads KVM and runs a guest of its own; without the option
# it sees neither; the option on a t3 type is refused with the reason.
begin_checks nested
for mode in on off; do
  opt=
  [ $mode = on ] && opt="--cpu-options NestedVirtualization=enabled"
  id=$(gureum run --no-network --image busybox --type c8i.large $opt --name "nested-$mode" \
    --cmdline-append rig.scenario=nested 2>&1)
  echo "launched $id"
  wait_log "$id" @@KVM-HELLO 1 300 || fail "$mode: no @@KVM-HELLO on the console"
  # The guest powers off right after that line, which the log may hold
  # only in part until then (CI read "kvm-h" once, on a loaded machine).
  gureum instance wait "$id" --state stopped --timeout 120 >/dev/null ||
    fail "$mode: the guest did not power off after its report"
  log=$(gureum instance logs "$id" | tr -d '\r')
  for key in VIRT-FLAGS DEV-KVM KVM-HELLO; do
    echo "${mode}_$key=$(echo "$log" | sed -n "s/.*@@$key *//p" | head -n 1 | sed 's/ *$//')"
  done
  gureum instance terminate "$id" >/dev/null 2>&1 || fail "terminate $mode"
done
out=$(gureum run --no-network --image busybox --type t3.micro --cpu-options NestedVirtualization=enabled 2>&1) &&
  fail "a t3 with nested virtualization launched: $out"
echo "t3_refused=$out"
end_checks nested

# The daemon: an instance launched through it keeps running when the
# daemon is killed with SIGKILL (the CLI carries on in-process past the
# stale socket); started again, the daemon adopts it and stops it.
begin_checks daemon
start_daemon() {
  gureum daemon --reconcile-every 2 >>/tmp/daemon.log 2>&1 &
  dpid=$!
  n=0
  until gureum daemon --check >/dev/null 2>&1 || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
  gureum daemon --check || fail "no daemon answers"
}
start_daemon
id=$(gureum run --no-network --image busybox --type t2.nano --name d-1 --cmdline-append rig.scenario=idle 2>&1)
echo "launched $id"
gureum instance wait "$id" --state running --timeout 120 || fail "never running"
wait_log "$id" @@IDLE 1 300 || fail "no @@IDLE on the console"
pid=$(vmm_pid "$id")
kill -9 "$dpid"
wait "$dpid" 2>/dev/null
sleep 1
alive "$pid" || fail "the VMM died with the daemon"
[ -S "$S/gureum.sock" ] && echo "stale_socket=yes"
gureum instance list >/dev/null || fail "the CLI fails past a stale socket"
start_daemon
echo "adopted_state=$(describe instance "$id" state)"
[ "$(vmm_pid "$id")" = "$pid" ] || fail "the VMM is not the one that ran"
out=$(gureum instance stop "$id" 2>&1) || fail "stop: $out"
echo "daemon_stop_printed=$out"
gureum instance wait "$id" --state stopped --timeout 60 || fail "never stopped"
echo "state=$(describe instance "$id" state)"
alive "$pid" && fail "VMM $pid still runs after stop"
gureum instance terminate "$id" >/dev/null 2>&1 || fail "terminate"
kill "$dpid"
wait "$dpid" 2>/dev/null
tail -n 5 /tmp/daemon.log
end_checks daemon
