# Helpers for rig test scripts; the rig installs this file in L1 as
# /rig/cases.sh. A test script sources it and reports each case as
#   @@CASE <name> BEGIN ... @@CASE <name> RC <status>
# for tests/common/mod.rs to split.

begin() { echo "@@CASE $1 BEGIN"; }
end() { echo "@@CASE $1 RC $2"; }

# Cases made of several checks: each failed check prints "@@FAIL <what>"
# and the case's status is 1 if any failed.
begin_checks() { begin "$1"; rc=0; }
end_checks() { end "$1" "$rc"; }
fail() { echo "@@FAIL $*"; rc=1; }

# Exit status of `gureum boot` for a guest crash (triple fault).
GUREUM_EXIT_CRASH=4

# Exit statuses of `timeout -k ...` around a VMM whose guest hung: it
# got SIGTERM (124), or SIGKILL after the grace period (137).
TIMEOUT_EXPIRED=124
TIMEOUT_KILLED=137

# Runs a VMM command (under `timeout`); when the guest crashes or hangs,
# says so and runs it once more. Nested SVM under QEMU's software CPU
# (the rig's L0) now and then triple-faults an L2 vCPU, under QEMU's own
# microvm as under gureum (measured: about 1 boot in 15 while other
# emulators load the 2 cores, none in 10 alone), or stops running one (an
# L2 kernel reporting an RCU stall of the other vCPU for minutes), so one
# such run is reported but not held against the VMM; a second is.
run_vmm() {
  "$@"
  status=$?
  case $status in
    "$GUREUM_EXIT_CRASH"|"$TIMEOUT_EXPIRED"|"$TIMEOUT_KILLED")
      echo "@@RETRY after a guest crash or hang (status $status): $*"
      "$@"
      status=$? ;;
  esac
  return "$status"
}

# A field of `gureum NOUN describe REF`, which prints "key:  value" lines.
describe() {  # NOUN REF KEY
  gureum "$1" describe "$2" | sed -n "s/^$3: *//p"
}

# Whole seconds since L1 booted.
uptime_s() { cut -d. -f1 /proc/uptime; }

# Waits up to SECONDS until the console log of instance ID holds COUNT
# lines matching PATTERN, and says how long it took; when it gives up,
# shows the instance's state and the console's last lines. A guest crash
# (see run_vmm) is reported and the instance started again, up to twice
# (a boot more than the caller asked for each time: counted in
# $crash_retries). Twice: CI once saw a jailed busybox guest triple-fault
# in early boot two boots in a row (nested SVM under TCG; the same suite
# passed at once when run again).
crash_retries=0
wait_log() {  # ID PATTERN COUNT SECONDS
  local t0 retried=0
  t0=$(uptime_s)
  while [ "$(gureum instance logs "$1" 2>/dev/null | grep -c "$2")" -lt "$3" ]; do
    case $(describe instance "$1" state_reason) in
      *"guest crashed"*)
        if [ "$retried" -lt 2 ]; then
          echo "@@RETRY after a guest crash: $1"
          retried=$((retried + 1)) crash_retries=$((crash_retries + 1))
          gureum instance start "$1" >/dev/null || return 1
        fi ;;
    esac
    if [ $(($(uptime_s) - t0)) -gt "$4" ]; then
      echo "$1: no $2 after $4 s; state: $(describe instance "$1" state) $(describe instance "$1" state_reason)"
      gureum instance logs "$1" 2>&1 | tail -n 15
      return 1
    fi
    sleep 0.5
  done
  echo "$1: $2 after $(($(uptime_s) - t0)) s"
}
