#!/bin/sh
# The Debian image end to end, inside the nested KVM rig's L1 (busybox
# sh, with OpenSSH's client, GNU tar and ip shipped from the host), run by
# tests/rig_debian.rs: import the image, create key pairs, launch an
# instance on a tap with an address, log in with its key pair (a wrong
# key is refused), keep a file across stop/start, save the instance as an
# image and boot that; the first image's disk is unchanged. Cases print
#   @@CASE <name> BEGIN ... @@CASE <name> RC <0 if every check passed>
# with "@@FAIL <what>" for each failed check and "key=value" results.
#
# Memory: L1 has 2 GiB and every file here is in RAM (rootfs, /tmp), so
# each disk copy costs its size; instances are terminated as soon as
# they have been checked.
set -u
# Full paths: L1's busybox sh runs its own applets (tar, ip) first, and
# these need GNU tar's sparse files and iproute2's tuntap.
TAR=/usr/bin/tar
IP=/usr/bin/ip
export GUREUM_STATE_DIR=/tmp/gureum-state
P=$RIG_PAYLOAD/debian
TAP=gtap0
HOST_IP=10.77.0.1
SSH_WAIT=600

. /rig/cases.sh

# Seconds since L1 booted, to 10 ms.
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

ssh_as() {  # KEY IP COMMAND
  ssh -i "$1" -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "admin@$2" "$3"
}
# Waits until admin@IP accepts KEY on instance ID; fails after SSH_WAIT
# seconds. A guest crash (the rig's nested SVM triple-faults an L2 vCPU
# now and then, see /rig/cases.sh) is reported and the instance started
# once more; a second crash fails.
wait_ssh() {  # ID KEY IP
  t=$(now) retried=
  until ssh_as "$2" "$3" true 2>/dev/null; do
    [ "$(elapsed "$t" | cut -d. -f1)" -ge $SSH_WAIT ] && return 1
    case $(describe instance "$1" state_reason) in
      *"guest crashed"*)
        [ -n "$retried" ] && return 1
        echo "@@RETRY after a guest crash: $1"
        retried=1
        gureum instance start "$1" >/dev/null || return 1 ;;
    esac
    sleep 1
  done
}
# Launches NAME from IMAGE at IP and waits for SSH; prints the ID.
launch() {  # NAME IMAGE IP
  gureum run --image "$2" --type t2.nano --name "$1" --key mykey \
    --tap $TAP --ip "$3/24" --gateway $HOST_IP
}
show_console() {  # ID: the guest's console, for diagnosis
  echo "--- console of $1 ---"
  gureum instance logs "$1" | tail -n 40
  echo "---"
}

begin_checks import
mkdir -p /tmp/debian
# A sparse tar, so that only the disk's data crosses into L1 (in RAM).
if $TAR -xSf "$P/root.tar" -C /tmp/debian; then
  rm -f "$P/root.tar"
else
  fail "cannot unpack the root disk"
fi
cp "$P/manifest" /tmp/debian/
cp "$RIG_GUEST_KERNEL" /tmp/debian/vmlinuz
cp "$RIG_GUEST_INITRD" /tmp/debian/initrd.cpio.gz
gureum image import /tmp/debian 2>&1 || fail "image import"
rm -rf /tmp/debian
gureum image describe debian-12 || fail "image describe"
end_checks import

begin_checks keys
cd /tmp
gureum key create mykey 2>&1 || fail "key create mykey"
gureum key create otherkey 2>&1 || fail "key create otherkey"
[ -s /tmp/mykey.pem ] && [ -s /tmp/otherkey.pem ] || fail "no private key files"
end_checks keys

begin_checks tap
$IP tuntap add dev $TAP mode tap || fail "ip tuntap add"
$IP addr add $HOST_IP/24 dev $TAP || fail "ip addr add"
$IP link set $TAP up || fail "ip link set up"
end_checks tap

begin_checks run
t0=$(now)
id1=$(launch web-1 debian-12 10.77.0.2 2>&1)
echo "launched $id1"
case $id1 in i-*) ;; *) fail "run printed '$id1'" ;; esac
gureum instance wait "$id1" --state running --timeout 120 || fail "never running"
if wait_ssh "$id1" /tmp/mykey.pem 10.77.0.2; then
  echo "boot_to_ssh_seconds=$(elapsed "$t0")"
else
  fail "SSH never accepted the key pair"
  show_console "$id1"
fi
end_checks run

begin_checks ssh
out=$(ssh_as /tmp/mykey.pem 10.77.0.2 \
  'echo "hostname=$(hostname)"; echo "user=$(id -un)"; sudo -n true && echo sudo=ok; echo "root=$(findmnt -n -o SOURCE /)"' 2>&1) ||
  fail "ssh with the key pair: $out"
echo "$out"
# Where the boot time goes (printed for people, not checked).
ssh_as /tmp/mykey.pem 10.77.0.2 'sudo systemd-analyze time; sudo systemd-analyze blame | head -n 12' 2>&1
hostkey1=$(ssh_as /tmp/mykey.pem 10.77.0.2 'cat /etc/ssh/ssh_host_ed25519_key.pub' 2>/dev/null)
end_checks ssh

begin_checks wrong-key
if out=$(ssh_as /tmp/otherkey.pem 10.77.0.2 true 2>&1); then
  fail "a wrong key was accepted"
fi
echo "$out"
case $out in *"Permission denied"*) echo "refused=yes" ;; *) fail "no 'Permission denied': $out" ;; esac
end_checks wrong-key

begin_checks persist
ssh_as /tmp/mykey.pem 10.77.0.2 'echo gureum-was-here | sudo tee /var/lib/marker >/dev/null && sync' ||
  fail "cannot write the marker"
t0=$(uptime_s)
gureum instance stop "$id1" --timeout 30 2>&1 || fail "stop"
gureum instance wait "$id1" --state stopped --timeout 60 || fail "never stopped"
# systemd-logind powers off on the ACPI power button.
echo "stop_s=$(($(uptime_s) - t0))"
echo "state=$(describe instance "$id1" state)"
echo "reason=$(describe instance "$id1" state_reason)"
gureum instance start "$id1" 2>&1 || fail "start"
gureum instance wait "$id1" --state running --timeout 120 || fail "never running again"
wait_ssh "$id1" /tmp/mykey.pem 10.77.0.2 || { fail "no SSH after start"; show_console "$id1"; }
echo "marker=$(ssh_as /tmp/mykey.pem 10.77.0.2 'cat /var/lib/marker' 2>&1)"
[ "$(ssh_as /tmp/mykey.pem 10.77.0.2 'cat /etc/ssh/ssh_host_ed25519_key.pub')" = "$hostkey1" ] &&
  echo "hostkey_kept=yes"
echo "boots=$(describe instance "$id1" boots)"
end_checks persist

begin_checks image-create
gureum instance stop "$id1" --timeout 30 2>&1 || fail "stop"
gureum instance wait "$id1" --state stopped --timeout 60 || fail "never stopped"
gureum image create --instance "$id1" --name debian-marked 2>&1 || fail "image create"
gureum image describe debian-marked | grep source_instance
gureum instance terminate "$id1" 2>&1 || fail "terminate $id1"
gureum instance wait "$id1" --state terminated --timeout 60 || fail "$id1 never terminated"
id2=$(launch web-2 debian-marked 10.77.0.3 2>&1)
echo "launched $id2"
if wait_ssh "$id2" /tmp/mykey.pem 10.77.0.3; then
  echo "new_marker=$(ssh_as /tmp/mykey.pem 10.77.0.3 'cat /var/lib/marker' 2>&1)"
  # The fullest moment: two images and an instance, all in L1's RAM.
  echo "l1_memory_mib: $(free -m | sed -n 2p)"
  echo "new_hostname=$(ssh_as /tmp/mykey.pem 10.77.0.3 hostname 2>&1)"
  [ "$(ssh_as /tmp/mykey.pem 10.77.0.3 'cat /etc/ssh/ssh_host_ed25519_key.pub')" != "$hostkey1" ] &&
    echo "new_hostkey=yes"
else
  fail "no SSH into the instance of the saved image"
  show_console "$id2"
fi
gureum instance terminate "$id2" 2>&1 || fail "terminate $id2"
gureum instance wait "$id2" --state terminated --timeout 60 || fail "$id2 never terminated"
end_checks image-create

# The first image's own disk, read with debugfs rather than booted (a
# Debian boot is a minute of the rig's time): a file every image has is
# there, the marker is not.
begin_checks original-image
ami=$(describe image debian-12 id)
disk=$GUREUM_STATE_DIR/images/$ami/root.img
[ -f "$disk" ] || fail "no root disk at '$disk'"
# debugfs exits 0 on a missing file too: what it prints is the check.
[ -n "$(debugfs -R 'cat /etc/debian_version' "$disk" 2>/dev/null)" ] ||
  fail "debugfs cannot read /etc/debian_version in $disk"
out=$(debugfs -R 'cat /var/lib/marker' "$disk" 2>/dev/null)
echo "original_marker=${out:-absent}"
end_checks original-image
