# Helpers for rig test scripts; the rig installs this file in L1 as
# /rig/cases.sh. A test script sources it and reports each case as
#   @@CASE <name> BEGIN ... @@CASE <name> RC <status>
# for tests/common/mod.rs to split.

# Each case's L1 seconds follow its end, for tests/common/mod.rs to
# print: what keeps CI's rig suites lean is knowing where they spend.
begin() { case_t0=$(uptime_s); echo "@@CASE $1 BEGIN"; }
end() {
  echo "@@CASE $1 RC $2"
  echo "@@CASE-TIME $1 $(($(uptime_s) - ${case_t0:-0}))"
}

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

# The /proc directories of the processes of every VMM whose command line
# holds PATTERN (an instance's ID, a scenario): its jail's keeper and the
# VMM itself.
vmm_procs() {  # PATTERN
  for cmd in /proc/[0-9]*/cmdline; do
    case $(tr '\0' ' ' <"$cmd" 2>/dev/null) in
      *"gureum boot "*"$1"*|*"gureum-vmm boot "*"$1"*) echo "${cmd%/cmdline}" ;;
    esac
  done
}
# The PID of instance ID's VMM: the process running its vCPUs.
vmm_pid() {  # ID
  for dir in $(vmm_procs "$1"); do
    grep -qx vcpu0 "$dir"/task/*/comm 2>/dev/null && echo "${dir#/proc/}"
  done
}
# Where the threads of every VMM whose command line holds PATTERN are,
# shown before a hung guest's VMM is killed: a vCPU in the kernel's KVM
# code (running the guest, or halted waiting for an interrupt) is the
# rig's or the guest's; one blocked in the VMM's own code is a VMM bug.
vmm_threads() {  # PATTERN
  for dir in $(vmm_procs "$1"); do
    for task in "$dir"/task/*; do
      echo "@@THREAD ${dir#/proc/}/${task##*/} $(cat "$task/comm") state $(cut -d' ' -f3 "$task/stat")" \
        "wchan $(cat "$task/wchan" 2>/dev/null) stack $(head -n 4 "$task/stack" 2>/dev/null | sed 's/+.*//; s/.* //' | tr '\n' ' ')"
    done
  done
}

# A field of `gureum NOUN describe REF`, which prints "key:  value" lines.
describe() {  # NOUN REF KEY
  gureum "$1" describe "$2" | sed -n "s/^$3: *//p"
}

# Whole seconds since L1 booted.
uptime_s() { cut -d. -f1 /proc/uptime; }

# Waits up to SECONDS until the console log of instance ID holds COUNT
# lines matching PATTERN, and says how long it took; when it gives up,
# shows the instance's state, the console's last lines and where the
# VMM's threads are. A guest crash, or a hang (a guest still running
# without PATTERN after SECONDS; see run_vmm), is reported and the
# instance started again, up to twice
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
      vmm_threads "$1"
      # A running guest that made no progress hung (see run_vmm): it is
      # killed and started once more, within the same retry budget.
      if [ "$retried" -lt 2 ] && [ "$(describe instance "$1" state)" = running ]; then
        echo "@@RETRY after a guest hang: $1"
        retried=$((retried + 1)) crash_retries=$((crash_retries + 1))
        gureum instance stop --force "$1" >/dev/null &&
          gureum instance wait "$1" --state stopped >/dev/null &&
          gureum instance start "$1" >/dev/null || return 1
        t0=$(uptime_s)
        continue
      fi
      return 1
    fi
    sleep 0.5
  done
  echo "$1: $2 after $(($(uptime_s) - t0)) s"
}

# Instances of the busybox image's "serve" scenario: HTTP on ports 80 and
# 8080 answering the client's address, and a shell on the console
# through which a test sends commands.
# Runs COMMAND in instance ID's console shell and prints its first output
# line, or "FAILED" when it exits non-zero. The answer comes between the
# tag and its mirror (@@r7=ANSWER=@@r7), twice: a kernel message that
# cuts one line (CI once read 'F' for 'FAILED') leaves the other whole.
# The markers are quoted in the typed line so that the console's echo of
# it never matches. Callers run it in $(...): the request counter lives
# in a file.
guest() {  # ID COMMAND
  [ -e /tmp/guest-requests ] || echo 0 >/tmp/guest-requests
  tag=r$(( $(cat /tmp/guest-requests) + 1 ))
  echo "${tag#r}" >/tmp/guest-requests
  printf '%s\n' "if out=\$($2 2>&1); then r=\$(echo \$out | head -c 120); else r=FAILED; fi; for n in 1 2; do echo \"@@$tag\"=\"\$r\"=\"@@$tag\"; done" |
    gureum instance console "$1" >/dev/null 2>/tmp/console-err ||
    echo "@@CONSOLE-FAILED $1 $tag: $(cat /tmp/console-err)" >&2
  t0=$(uptime_s)
  until line=$(gureum instance logs "$1" | tr -d '\r' | grep -a -o "@@$tag=.*=@@$tag" | head -n 1) &&
    [ -n "$line" ]; do
    if [ $(($(uptime_s) - t0)) -gt 60 ]; then
      if revive "$1" "$tag"; then guest "$1" "$2"; else echo "NO-ANSWER"; fi
      return
    fi
    sleep 0.3
  done
  line=${line#@@$tag=}
  echo "${line%=@@$tag}"
}
# Says on the console (stderr: callers capture stdout) why instance ID
# gave no answer to request TAG: its state, whether the guest echoed the
# typed request (if not, the input was lost on its way or the guest
# stopped reading), the console's last lines and where the VMM's
# threads are. A guest crash is forgiven once per instance, as in
# wait_log: the instance is started again and the caller asks once more.
revive() {  # ID TAG
  reason=$(describe instance "$1" state_reason)
  echo "@@NO-ANSWER from $1: $(describe instance "$1" state) $reason" >&2
  echo "@@ECHOED $2: $(gureum instance logs "$1" | grep -a -c "@@$2\"")" >&2
  tail -n 5 "$GUREUM_STATE_DIR/instances/$1/vmm.log" >&2
  gureum instance logs "$1" 2>&1 | tail -n 8 >&2
  vmm_threads "$1" >&2
  case $reason in *"guest crashed"*) ;; *) return 1 ;; esac
  [ -e "/tmp/revived-$1" ] && return 1
  touch "/tmp/revived-$1"
  echo "@@RETRY after a guest crash: $1" >&2
  served=$(gureum instance logs "$1" | grep -c @@SERVING)
  gureum instance start "$1" >/dev/null && wait_log "$1" @@SERVING $((served + 1)) 240 >&2
}
# An HTTP GET from instance ID, answered by the peer's address as the
# server saw it (or FAILED).
fetch() {  # ID URL
  guest "$1" "timeout 8 wget -q -O - $2"
}
# Checks that instance ID fetches URL and is seen as WANT (a
# "what=address" line either way), or, with WANT "FAILED", that it cannot.
expect_fetch() {  # WHAT ID URL WANT
  got=$(fetch "$2" "$3")
  echo "$1=$got"
  [ "$got" = "$4" ] || fail "$1: $2 fetching $3 got '$got', want '$4'"
}
# A web root at DIR whose /cgi-bin/peer answers, as the guests' does
# (images/busybox/init), the client's IPv4 address.
peer_site() {  # DIR
  mkdir -p "$1/cgi-bin"
  cat >"$1/cgi-bin/peer" <<'CGI'
#!/bin/sh
a=${REMOTE_ADDR#"[::ffff:"}
printf 'Content-Type: text/plain\r\n\r\n%s\n' "${a%"]"}"
CGI
  chmod 0755 "$1/cgi-bin/peer"
}
