#!/bin/sh
# The VMM's sandbox, inside the nested KVM rig's L1 (busybox sh), run by
# tests/rig_sandbox.rs: a running instance's VMM is jailed (own PID and
# mount namespaces, empty root, unprivileged uid, no capabilities,
# rlimits), every thread of it runs under a seccomp filter, its cgroup
# has the type's limits; a syscall outside a filter kills it (SIGSYS);
# cgroups go with their VMM, and a crash of everything leaves none after
# the next reconcile. Cases as in instances.sh.
set -u
export GUREUM_STATE_DIR=/tmp/gureum-state
CG=/sys/fs/cgroup/gureum

. /rig/cases.sh

# Every syscall a filter refused is in the kernel log (audit type 1326):
# keep them all for the last case.
echo 0 >/proc/sys/kernel/printk_ratelimit

# The jailed VMM: the child of the keeper the supervisor recorded.
vmm_of() {  # KEEPER_PID
  grep -l "^PPid:[[:space:]]*$1\$" /proc/[0-9]*/status 2>/dev/null | head -n 1 | cut -d/ -f3
}
field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status"; }

begin_checks import
gureum image import /rig/guest >/dev/null 2>&1 || fail "image import"
end_checks import

begin_checks run
id=$(gureum run --image busybox --type t3.micro --name jailed --tap gtap0 \
  --cmdline-append rig.scenario=idle 2>&1)
echo "launched $id"
gureum instance wait "$id" --state running --timeout 120 || fail "never running"
wait_log "$id" @@IDLE 1 300 || fail "no @@IDLE on the console"
keeper=$(describe instance "$id" vmm.pid)
vmm=$(vmm_of "$keeper")
echo "keeper=$keeper vmm=$vmm"
[ -n "$vmm" ] || fail "no VMM under the keeper $keeper"
end_checks run

begin_checks seccomp
# Every thread of the VMM and its keeper, with its filter mode and count.
for p in $keeper $vmm; do
  for t in /proc/$p/task/*; do
    echo "thread=$p $(cat "$t/comm" | tr ' ' _) Seccomp=$(sed -n 's/^Seccomp:[[:space:]]*//p' "$t/status") filters=$(sed -n 's/^Seccomp_filters:[[:space:]]*//p' "$t/status")"
  done
done
unfiltered=$(for p in $keeper $vmm; do grep -L '^Seccomp:[[:space:]]*2' /proc/$p/task/*/status; done | wc -l)
echo "unfiltered=$unfiltered"
gureum boot --print-seccomp | head -n 3
end_checks seccomp

begin_checks jail
echo "uid=$(field "$vmm" Uid | tr '\t' ' ')"
echo "gid=$(field "$vmm" Gid | tr '\t' ' ')"
echo "groups=$(field "$vmm" Groups)"
for c in CapInh CapPrm CapEff CapBnd CapAmb; do echo "$c=$(field "$vmm" $c)"; done
echo "NoNewPrivs=$(field "$vmm" NoNewPrivs)"
echo "nspid=$(field "$vmm" NSpid | tr '\t' ' ')"
for ns in mnt pid ipc; do
  if [ "$(readlink /proc/$vmm/ns/$ns)" = "$(readlink /proc/1/ns/$ns)" ]; then
    echo "own_$ns=no"
  else
    echo "own_$ns=yes"
  fi
done
echo "root_entries=$(ls -A /proc/$vmm/root/ | wc -l)"
echo "keeper_uid=$(field "$keeper" Uid | cut -f1)"
grep -E 'Max (open files|file size|core file size)' /proc/$vmm/limits
echo "open_fds=$(ls /proc/$vmm/fd | wc -l)"
end_checks jail

begin_checks cgroup
d=$CG/$id
echo "cpu.max=$(cat $d/cpu.max)"
echo "memory.max=$(cat $d/memory.max)"
echo "procs=$(sort -n $d/cgroup.procs | tr '\n' ' ')"
for p in $(sort -un $d/cgroup.procs); do
  echo "proc $p $(cat /proc/$p/comm 2>/dev/null) ppid=$(field "$p" PPid) state=$(field "$p" State)"
done
grep -qx "$vmm" $d/cgroup.procs || fail "the VMM is not in $d"
grep -qx "$keeper" $d/cgroup.procs || fail "the keeper is not in $d"
# What the VMM costs beyond guest RAM: the cgroup's charge less what the
# guest's RAM mapping holds (the mapping as big as its RAM, 1024 MiB).
guest_kb=$(awk '/^Size:/ { big = ($2 == 1048576) } /^Rss:/ && big { print $2; exit }' /proc/$vmm/smaps)
current=$(cat $d/memory.current)
echo "memory.current=$current"
echo "guest_rss_kb=$guest_kb"
echo "vmm_rss_kb=$(field "$vmm" VmRSS | cut -d' ' -f1)"
echo "keeper_rss_kb=$(field "$keeper" VmRSS | cut -d' ' -f1)"
echo "overhead_kb=$(( current / 1024 - guest_kb ))"
[ -f $d/memory.peak ] && echo "memory.peak=$(cat $d/memory.peak)"
grep -E '^(anon|file|kernel|kernel_stack|pagetables|sec_pagetables|sock) ' $d/memory.stat
end_checks cgroup

begin_checks console
# The console socket and log, opened before the jail, still serve.
printf 'x' | timeout 10 gureum instance console "$id" >/dev/null 2>&1 || fail "console attach"
sleep 1
echo "state=$(describe instance "$id" state)"
[ "$(ls /proc/$vmm/task | wc -l)" -gt 0 ] || fail "the VMM died on a console client"
end_checks console

begin_checks metrics
# The metrics file, replaced from inside the jail through its directory:
# removed here, it comes back on SIGUSR1.
m=$GUREUM_STATE_DIR/instances/$id/metrics.json
[ -s "$m" ] || fail "no metrics.json"
rm -f "$m"
kill -USR1 "$vmm"
n=0
while [ ! -s "$m" ] && [ $n -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
[ -s "$m" ] || fail "metrics.json not rewritten after SIGUSR1"
echo "rewritten=yes"
grep -q '"devices"' "$m" || fail "metrics.json without devices"
# The control plane reads them back.
shown=$(gureum instance metrics "$id") || fail "instance metrics: $shown"
echo "$shown"
echo "$shown" | grep -q '^console.dropped_bytes: *[0-9]' && echo "shown=yes"
end_checks metrics

begin_checks stop
gureum instance stop "$id" --timeout 60 2>&1 || fail "stop"
gureum instance wait "$id" --state stopped --timeout 90 || fail "never stopped"
echo "state=$(describe instance "$id" state)"
reason=$(describe instance "$id" state_reason)
echo "reason=$reason"
# CI once saw this guest ignore its button for 60 s (a rerun passed):
# what it printed last says whether acpid ran and the kernel was alive.
case $reason in
  *SIGKILL*) echo "--- console tail of $id"; gureum instance logs "$id" 2>&1 | tail -n 25 ;;
esac
[ -d "$CG/$id" ] && fail "cgroup left after stop"
kill -0 "$vmm" 2>/dev/null && fail "VMM $vmm still runs"
end_checks stop

# The test-only trip: a thread of that kind makes a syscall outside its
# filter right after installing it.
for kind in vcpu console; do
  begin_checks "trip-$kind"
  # The trip may kill the VMM before it reports ready: start then fails.
  GUREUM_TEST_SECCOMP_TRIP=$kind gureum instance start "$id" 2>&1 || echo "start failed"
  i=0
  until [ "$(describe instance "$id" state)" = stopped ]; do
    i=$((i + 1)); [ $i -gt 600 ] && { fail "still $(describe instance "$id" state)"; break; }
    sleep 0.2
  done
  echo "state=$(describe instance "$id" state)"
  echo "reason=$(describe instance "$id" state_reason)"
  grep -c "GUREUM_TEST_SECCOMP_TRIP=$kind" "$GUREUM_STATE_DIR/instances/$id/vmm.log"
  [ -d "$CG/$id" ] && fail "cgroup left after SIGSYS"
  end_checks "trip-$kind"
done

begin_checks stale
gureum instance start "$id" 2>&1 || fail "start"
gureum instance wait "$id" --state running --timeout 120 || fail "never running"
sup=$(describe instance "$id" supervisor.pid)
keeper=$(describe instance "$id" vmm.pid)
vmm=$(vmm_of "$keeper")
echo "supervisor=$sup keeper=$keeper vmm=$vmm"
kill -9 "$sup" "$keeper" "$vmm"
sleep 1
[ -d "$CG/$id" ] && echo "left=yes" || echo "left=no"
gureum instance list >/dev/null
echo "state=$(describe instance "$id" state)"
[ -d "$CG/$id" ] && echo "after_reconcile=yes" || echo "after_reconcile=no"
end_checks stale

begin_checks terminate
gureum instance terminate "$id" 2>&1 || fail "terminate"
echo "state=$(describe instance "$id" state)"
echo "left_cgroups=$(ls -d $CG/i-* 2>/dev/null | wc -l)"
echo "left_vmms=$(ps | grep -c '[g]ureum boot')"
end_checks terminate

begin_checks audit
# The trips' getppid (110) only: nothing else met a filter.
dmesg | grep 'type=1326' | sed 's/.* uid=\([0-9]*\) .*comm=\([^ ]*\) .*syscall=\([0-9]*\) .*/refused uid=\1 comm=\2 syscall=\3/'
echo "refused=$(dmesg | grep -c 'type=1326')"
echo "unexpected=$(dmesg | grep 'type=1326' | grep -vc ' syscall=110 ')"
end_checks audit
