#!/bin/sh
# End-to-end boot cases, run inside the nested KVM rig's L1 (busybox sh)
# by tests/rig_boot.rs. Each case prints
#   @@CASE <name> BEGIN ... @@CASE <name> RC <exit status of gureum>
# and the Rust side asserts on what came out in between.
set -u
K=$RIG_GUEST_KERNEL
V=$RIG_GUEST_VMLINUX
I=$RIG_GUEST_INITRD
BASE="console=ttyS0 reboot=k panic=-1 quiet"

. /rig/cases.sh

boot() {  # NAME KERNEL SCENARIO [OPTION...]
  name=$1 kernel=$2 scenario=$3
  shift 3
  begin "$name"
  run_vmm timeout -k 10 180 gureum boot --kernel "$kernel" --initrd "$I" --vcpus 2 --memory 512 \
    --cmdline "$BASE rig.scenario=$scenario" "$@" 2>&1
  end "$name" $?
}

# The CPU's model name as L1 sees it, for the guest's to match.
begin host
echo "@@HOST-MODEL $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
end host 0

boot info-bzimage "$K" info
# As an instance's VMM is started: its identity in the SMBIOS tables.
boot info-elf "$V" info --uuid ec201234-5678-9abc-def0-000000000000 --product-name t3.micro \
  --asset-tag i-0123456789abcdef0
boot reboot "$K" reboot

# A shell on the serial console answers a command sent on stdin. A guest
# the rig crashed takes its VMM, the fifo's reader, with it: writes then
# fail (SIGPIPE ignored, or it would end this script) and the shell is
# started once more, visibly, as run_vmm does.
trap '' PIPE
wait_for() {  # PATTERN
  i=0
  until grep -q "$1" /tmp/console-out; do
    i=$((i + 1)); [ $i -gt 600 ] && return 1; sleep 0.2
  done
}
shell_once() {
  rm -f /tmp/console-in
  mkfifo /tmp/console-in
  timeout -k 10 180 gureum boot --kernel "$K" --initrd "$I" --vcpus 1 --memory 256 \
    --cmdline "$BASE rig.scenario=shell" </tmp/console-in >/tmp/console-out 2>&1 &
  vmm=$!
  exec 3>/tmp/console-in
  wait_for @@READY && sleep 1
  echo 'echo HELLO-$((6*7))' >&3
  wait_for HELLO-42
  echo 'poweroff -f' >&3
  wait $vmm
  rc=$?
  exec 3>&-
}
begin shell
shell_once
case $rc in
  "$GUREUM_EXIT_CRASH"|"$TIMEOUT_EXPIRED"|"$TIMEOUT_KILLED")
    cat /tmp/console-out
    echo "@@RETRY after a guest crash or hang (status $rc): the shell"
    shell_once ;;
esac
cat /tmp/console-out
end shell $rc

# A corrupt kernel file fails with a clear error, inside the rig too.
begin corrupt-kernel
head -c 1048576 /dev/urandom >/tmp/corrupt
timeout -k 10 60 gureum boot --kernel /tmp/corrupt --initrd "$I" 2>&1
end corrupt-kernel $?

begin truncated-kernel
head -c 2000000 "$K" >/tmp/truncated
timeout -k 10 60 gureum boot --kernel /tmp/truncated --initrd "$I" 2>&1
end truncated-kernel $?
