#!/bin/sh
# The Debian image end to end, inside the nested KVM rig's L1 (busybox
# sh, with OpenSSH's client, GNU tar and dnsmasq shipped from the host),
# run by tests/rig_debian.rs: import the image, create key pairs, start
# the daemon (metadata service, DHCP and DNS, EC2 endpoint); launch an
# instance with `gureum run` and no network flags (the default VPC) with
# a user-data script: Debian's own cloud-init finds EC2 by itself and
# configures it from DHCP and the metadata service. Log in with its key
# pair (a wrong key is refused), keep a file across stop/start, save the
# instance as an image and boot that through the EC2 endpoint; the first
# image's disk is unchanged. Cases print
#   @@CASE <name> BEGIN ... @@CASE <name> RC <0 if every check passed>
# with "@@FAIL <what>" for each failed check and "key=value" results.
#
# Memory: every file here is in L1's RAM (rootfs, /tmp), so each disk
# copy costs its size (tests/rig_debian.rs gives L1 3 GiB); instances are
# terminated as soon as they have been checked.
set -u
# Full paths: L1's busybox sh runs its own applets (tar) first, and this
# needs GNU tar's sparse files.
TAR=/usr/bin/tar
export GUREUM_STATE_DIR=/tmp/gureum-state
P=$RIG_PAYLOAD/debian
SSH_WAIT=600

. /rig/cases.sh

# Seconds since L1 booted, to 10 ms.
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# `gureum ssh` to instance ID with KEY: from the VPC's namespace, to its
# address, as the image's user.
ssh_as() {  # KEY ID COMMAND
  gureum ssh "$2" -i "$1" --connect-timeout 5 -- "$3"
}
# Waits until instance ID accepts KEY; fails after SSH_WAIT seconds. A
# guest crash (the rig's nested SVM triple-faults an L2 vCPU now and
# then, see /rig/cases.sh) is reported and the instance started once
# more; a second crash fails.
wait_ssh() {  # ID KEY
  t=$(now) retried=
  until ssh_as "$2" "$1" true 2>/dev/null; do
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

# The daemon serves the metadata service, DHCP and DNS of every VPC (and
# the EC2 endpoint, for the api case).
begin_checks daemon
gureum daemon --listen 127.0.0.1:8773 >/tmp/daemon.log 2>&1 &
daemon=$!
t=$(now)
until gureum daemon --check >/dev/null 2>&1; do
  [ "$(elapsed "$t" | cut -d. -f1)" -ge 60 ] && { fail "the daemon never answered"; cat /tmp/daemon.log; break; }
  sleep 0.2
done
API=http://127.0.0.1:8773/
# The account root's access key, handed out once (JSON as the aws CLI's).
key=$(gureum iam create-access-key -o json) || fail "iam create-access-key: $key"
CREDENTIALS=$(printf '%s\n' "$key" | sed -n 's/.*"AccessKeyId": *"\([^"]*\)".*/\1/p'):$(
  printf '%s\n' "$key" | sed -n 's/.*"SecretAccessKey": *"\([^"]*\)".*/\1/p')
t=$(now)
until curl -s -o /dev/null "$API"; do
  [ "$(elapsed "$t" | cut -d. -f1)" -ge 30 ] && { fail "the endpoint never answered"; cat /tmp/daemon.log; break; }
  sleep 0.2
done
end_checks daemon

# EC2 Query calls through the endpoint: curl signs them (SigV4).
ec2() {  # PARAMS: the response in $xml; a failed call is a failed check
  xml=$(curl -s --aws-sigv4 aws:amz:us-east-1:ec2 --user "$CREDENTIALS" \
    --data "Version=2016-11-15&$1" "$API") || { fail "curl $1"; xml=; return 1; }
  case $xml in *"<Errors>"*) fail "$1: $xml"; return 1 ;; esac
}
field() {  # TAG: the first <TAG>value</TAG> of $xml
  printf '%s\n' "$xml" | sed -n "s:.*<$1>\([^<]*\)</$1>.*:\1:p" | head -n 1
}

begin_checks run
# User data: a shell script cloud-init runs once, at the end of the
# first boot; what it prints reaches the console.
printf '%s\n' '#!/bin/sh' 'echo "@@USER-DATA ran as $(id -un) on $(hostname)"' \
  'echo done >/var/lib/user-data-ran' >/tmp/user-data.sh
t0=$(now)
# --wait ssh: run returns once the guest's SSH server answers. A guest
# the rig crashed meanwhile ends the wait (wait_ssh starts it again).
# No network flags: the instance goes to the default VPC, made now.
id1=$(gureum run --image debian-12 --type t2.nano --name web-1 --key mykey \
  --user-data /tmp/user-data.sh --wait ssh --wait-timeout $SSH_WAIT 2>/tmp/run.err)
waited=$?
echo "launched $id1"
case $id1 in i-*) ;; *) fail "run printed '$id1': $(cat /tmp/run.err)" ;; esac
if [ $waited = 0 ]; then
  echo "run_waited=ssh"
  echo "run_to_ssh_answer_seconds=$(elapsed "$t0")"
else
  case $(describe instance "$id1" state_reason) in
    *"guest crashed"*) echo "@@RETRY run --wait ssh after a guest crash: $(cat /tmp/run.err)" ;;
    *) fail "run --wait ssh failed ($waited): $(cat /tmp/run.err)" ;;
  esac
fi
if wait_ssh "$id1" /tmp/mykey.pem; then
  echo "boot_to_ssh_seconds=$(elapsed "$t0")"
else
  fail "SSH never accepted the key pair"
  show_console "$id1"
fi
end_checks run

# What cloud-init made of the instance, unmodified and told nothing but
# the default user's name: the datasource ds-identify found, the
# address DHCP gave (the store's), the name and the user data.
begin_checks cloud-init
address=$(describe instance "$id1" placement.private_ip)
echo "store_ip=$address"
# cloud-init's last stage may still run when SSH first answers.
ssh_as /tmp/mykey.pem "$id1" 'timeout 300 cloud-init status --wait >/dev/null; cloud-init status --long
  sudo grep -E "WARNING|ERROR|Traceback" /var/log/cloud-init.log | head -n 20' 2>&1
ssh_as /tmp/mykey.pem "$id1" '
  echo "cloud_id=$(cloud-id)"
  echo "ds_identify=$(sed -n "s/^datasource_list: *//p" /run/cloud-init/cloud.cfg)"
  echo "dhcp_address=$(sudo sed -n "s/^ADDRESS=//p" /run/systemd/netif/leases/* | head -n 1)"
  echo "address=$(ip -4 -o addr show dev eth0 | sed -n "s|.* inet \([0-9.]*\)/.*|\1|p")"
  echo "hostname=$(hostname)"
  echo "user_data_file=$(cat /var/lib/user-data-ran)"
  echo "resolver=$(sed -n "s/^nameserver //p" /run/systemd/resolve/resolv.conf | head -n 1)"
  # Another address of the VPC: its name is not in /etc/hosts.
  echo "resolved=$(getent hosts ip-172-31-0-9.ec2.internal | cut -d" " -f1)"
  sudo cloud-init analyze show 2>/dev/null | grep -E "^(Finished|Total)" | tail -n 6
' 2>&1 || fail "cannot read what cloud-init did"
echo "user_data_console=$(gureum instance logs "$id1" | tr -d '\r' | sed -n 's/.*@@USER-DATA //p' | tail -n 1)"
end_checks cloud-init

# `gureum ssh` finds the address (in the VPC) and the image's user;
# the remote command's exit status is its own.
begin_checks ssh
out=$(gureum ssh "$id1" -i /tmp/mykey.pem -- \
  'echo "hostname=$(hostname)"; echo "user=$(id -un)"; sudo -n true && echo sudo=ok; echo "root=$(findmnt -n -o SOURCE /)"' 2>&1) ||
  fail "gureum ssh with the key pair: $out"
echo "$out"
gureum ssh "$id1" -i /tmp/mykey.pem -- 'exit 7'
echo "exit_status=$?"
# gureum cp: a directory in, a file made from it out.
mkdir -p /tmp/tree/sub && echo hello >/tmp/tree/sub/file
gureum cp -i /tmp/mykey.pem /tmp/tree "$id1:/tmp/" || fail "gureum cp into $id1"
gureum ssh "$id1" -i /tmp/mykey.pem -- 'tr a-z A-Z </tmp/tree/sub/file >/tmp/report' ||
  fail "no report made in $id1"
gureum cp -i /tmp/mykey.pem "$id1:/tmp/report" /tmp/report || fail "gureum cp out of $id1"
echo "copied_back=$(cat /tmp/report 2>&1)"
# Where the boot time goes (printed for people, not checked).
ssh_as /tmp/mykey.pem "$id1" 'sudo systemd-analyze time; sudo systemd-analyze blame | head -n 12' 2>&1
hostkey1=$(ssh_as /tmp/mykey.pem "$id1" 'cat /etc/ssh/ssh_host_ed25519_key.pub' 2>/dev/null)
end_checks ssh

begin_checks wrong-key
if out=$(ssh_as /tmp/otherkey.pem "$id1" true 2>&1); then
  fail "a wrong key was accepted"
fi
echo "$out"
case $out in *"Permission denied"*) echo "refused=yes" ;; *) fail "no 'Permission denied': $out" ;; esac
end_checks wrong-key

begin_checks persist
ssh_as /tmp/mykey.pem "$id1" 'echo gureum-was-here | sudo tee /var/lib/marker >/dev/null && sync' ||
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
wait_ssh "$id1" /tmp/mykey.pem || { fail "no SSH after start"; show_console "$id1"; }
echo "marker=$(ssh_as /tmp/mykey.pem "$id1" 'cat /var/lib/marker' 2>&1)"
[ "$(ssh_as /tmp/mykey.pem "$id1" 'cat /etc/ssh/ssh_host_ed25519_key.pub')" = "$hostkey1" ] &&
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
end_checks image-create

# The first image's own disk, read with debugfs rather than booted (a
# Debian boot is minutes of the rig's time): a file every image has is
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

# The EC2 endpoint: a VPC, subnet, security group and key pair made
# through it hold an instance launched through it, reached by SSH with
# the key pair the endpoint handed out, from inside the VPC's namespace.
# It boots the image saved above (one Debian boot serves both checks):
# it has the file, and its own EC2 name and host key (a new instance ID:
# cloud-init runs its per-instance steps again). Boots one after the
# other: L2 guests busy at once are when L1 (nested SVM under TCG) most
# often dies.
begin_checks api
ec2 "Action=CreateVpc&CidrBlock=10.9.0.0/16"; vpc=$(field vpcId)
ec2 "Action=CreateSubnet&VpcId=$vpc&CidrBlock=10.9.1.0/24"; subnet=$(field subnetId)
ec2 "Action=CreateSecurityGroup&VpcId=$vpc&GroupName=ssh&GroupDescription=ssh"; sg=$(field groupId)
ec2 "Action=AuthorizeSecurityGroupIngress&GroupId=$sg&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22&IpPermissions.1.IpRanges.1.CidrIp=10.9.0.0%2F16"
ec2 "Action=CreateKeyPair&KeyName=apikey"
printf '%s\n' "$xml" |
  awk '/<keyMaterial>/ { on = 1 } on { print } /<\/keyMaterial>/ { on = 0 }' |
  sed 's:.*<keyMaterial>::; s:</keyMaterial>.*::' >/tmp/apikey.pem
chmod 600 /tmp/apikey.pem
grep -q "PRIVATE KEY" /tmp/apikey.pem || fail "CreateKeyPair gave no private key"
ami=$(describe image debian-marked id)
api_t0=$(now)
ec2 "Action=RunInstances&ImageId=$ami&InstanceType=t2.nano&MinCount=1&MaxCount=1&KeyName=apikey&SubnetId=$subnet&SecurityGroupId.1=$sg&PrivateIpAddress=10.9.1.10&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web-2"
api_id=$(field instanceId)
echo "api_instance=$api_id vpc=$vpc subnet=$subnet sg=$sg"
t0=$(now) state=
[ -n "$api_id" ] || state=none
until [ "$state" = running ] || [ "$state" = none ]; do
  ec2 "Action=DescribeInstances&InstanceId.1=$api_id"; state=$(field name)
  [ "$(elapsed "$t0" | cut -d. -f1)" -ge 120 ] && break
  sleep 1
done
echo "api_state=$state"
out=
t=$(now)
api_ssh() { gureum ssh "$api_id" -i /tmp/apikey.pem -- "$1"; }
[ "$state" = running ] && until out=$(api_ssh 'hostname -I' 2>&1); do
  [ "$(elapsed "$t" | cut -d. -f1)" -ge $SSH_WAIT ] && { fail "no SSH into the API's instance: $out"; show_console "$api_id"; break; }
  case $(describe instance "$api_id" state_reason) in
    *"guest crashed"*) echo "@@RETRY after a guest crash: $api_id"; gureum instance start "$api_id" >/dev/null ;;
  esac
  sleep 1
done
echo "api_ssh_addresses=$(echo $out)"
echo "api_launch_to_ssh_seconds=$(elapsed "$api_t0")"
echo "new_marker=$(api_ssh 'cat /var/lib/marker' 2>&1)"
echo "new_hostname=$(api_ssh hostname 2>&1)"
[ "$(api_ssh 'cat /etc/ssh/ssh_host_ed25519_key.pub')" != "$hostkey1" ] && echo "new_hostkey=yes"
# The fullest moment: two images and an instance, all in L1's RAM.
echo "l1_memory_mib: $(free -m | sed -n 2p)"
ec2 "Action=TerminateInstances&InstanceId.1=$api_id"
gureum instance wait "$api_id" --state terminated --timeout 60 || fail "$api_id never terminated"
ec2 "Action=DeleteSecurityGroup&GroupId=$sg"
ec2 "Action=DeleteSubnet&SubnetId=$subnet"
ec2 "Action=DeleteVpc&VpcId=$vpc"
end_checks api

kill "$daemon"
wait "$daemon" 2>/dev/null
grep -i "dhcp\|metadata" /tmp/daemon.log
