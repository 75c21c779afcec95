#!/bin/sh
# virtio-blk and virtio-net with a stock Debian guest, inside the rig's L1.
# Cases as in boot.sh: @@CASE <name> BEGIN ... @@CASE <name> RC <n>.
set -u
K=$RIG_GUEST_KERNEL
I=$RIG_GUEST_INITRD
BASE="console=ttyS0 reboot=k panic=-1 quiet"

. /rig/cases.sh

# Counter NAME of the first device in the VMM's metrics file FILE.
counter() { grep -o "\"$1\":[0-9]*" "$2" | head -1 | cut -d: -f2; }

# Disks: a writable vda with a marker the guest reads and one it writes
# back, and a read-only vdb. vda is held to 1 request and 64 KiB per second, which
# the guest's boot (partition scan, reads, writes) runs into: the VMM's
# metrics file counts the throttles.
begin disk
dd if=/dev/zero of=/tmp/vda.img bs=1M count=0 seek=64 2>/dev/null
printf GUREUM-DISK-OK | dd of=/tmp/vda.img bs=1 seek=1048576 conv=notrunc 2>/dev/null
dd if=/dev/zero of=/tmp/vdb.img bs=1M count=0 seek=8 2>/dev/null
run_vmm timeout -k 10 180 gureum boot --kernel "$K" --initrd "$I" --vcpus 2 --memory 256 \
  --disk /tmp/vda.img,iops=1,bw=64K --disk /tmp/vdb.img,ro --metrics /tmp/disk-metrics.json \
  --cmdline "$BASE rig.scenario=disk" 2>&1
rc=$?
# The first device's counters are vda's.
echo "@@VDA-REQUESTS $(counter requests /tmp/disk-metrics.json)"
echo "@@VDA-THROTTLED $(counter throttled /tmp/disk-metrics.json)"
echo "@@VDA-ERRORS $(counter errors /tmp/disk-metrics.json)"
echo "@@HOST-READ $(dd if=/tmp/vda.img bs=1 skip=2097152 count=16 2>/dev/null)"
echo "@@HOST-VDB-BYTES $(od -An -tx1 -N1 /tmp/vdb.img | tr -d ' ')"
end disk $rc

# Network: the guest's eth0 on tap0, L1 at the other end. What the guest
# sends is held to 512 KiB/s; its flood lands in L1's nc on port 9000.
begin net
# L1's nc reads a FIFO held open (fd 4) as its stdin: an input at its end
# would close the connection. The flood's first byte and its end are timed.
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
mkfifo /tmp/hold
exec 4<>/tmp/hold
# One boot of the net guest; status 2 when it never brought eth0 up (a
# hang: the VMM's threads are shown, then it is ended).
net_once() {
  rm -f /tmp/flood /tmp/flood.start /tmp/flood.end
  (timeout 200 nc -l -p 9000 </tmp/hold >/tmp/flood; ms >/tmp/flood.end) &
  flood=$!
  (i=0; until [ -s /tmp/flood ] || [ $i -gt 3000 ]; do i=$((i + 1)); sleep 0.05; done; ms >/tmp/flood.start) &
  timeout -k 10 180 gureum boot --kernel "$K" --initrd "$I" --vcpus 2 --memory 256 \
    --net tap=tap0,mac=02:00:00:00:00:2a,tx_bw=512K --metrics /tmp/net-metrics.json \
    --cmdline "$BASE rig.scenario=net" >/tmp/net.out 2>&1 &
  vmm=$!
  i=0
  until ip link show tap0 >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 300 ] && break; sleep 0.1
  done
  ip addr add 172.30.0.1/24 dev tap0
  ip link set tap0 up
  i=0
  until grep -q @@NET-UP /tmp/net.out; do
    i=$((i + 1))
    if [ $i -gt 600 ]; then
      echo "@@NET-HUNG: no @@NET-UP after 120 s; the guest's last lines:"
      tail -n 15 /tmp/net.out
      vmm_threads rig.scenario=net
      kill "$vmm" 2>/dev/null
      wait "$vmm"
      kill "$flood" 2>/dev/null
      wait "$flood"
      return 2
    fi
    sleep 0.2
  done
  if ping -c 3 -W 5 172.30.0.2 >/dev/null; then echo "@@HOST-PING ok"; else echo "@@HOST-PING failed"; fi
  wait $vmm
  status=$?
  wait $flood
  return $status
}
net_once
rc=$?
if [ $rc -eq 2 ]; then
  echo "@@RETRY after a guest hang: the net guest"
  net_once
  rc=$?
fi
exec 4>&-
# The markers, and the guest's last lines (its whole boot log would
# bury them in CI's excerpt of a failure).
grep -a @@ /tmp/net.out
tail -n 20 /tmp/net.out
echo "@@FLOOD-BYTES $(wc -c </tmp/flood)"
echo "@@FLOOD-MS $(($(cat /tmp/flood.end) - $(cat /tmp/flood.start)))"
echo "@@NET-THROTTLED $(counter throttled /tmp/net-metrics.json)"
echo "@@NET-FEATURES $(counter features /tmp/net-metrics.json)"
# The tap was the VMM's own: it is gone with it.
if ip link show tap0 >/dev/null 2>&1; then echo "@@TAP-LEFT yes"; else echo "@@TAP-LEFT no"; fi
end net $rc
