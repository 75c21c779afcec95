#!/bin/sh
# The Debian image end to end, inside the nested KVM rig's L1 (busybox
# sh, with OpenSSH's client, GNU tar and dnsmasq shipped from the host),
# run by tests/rig_debian.rs: import the image, start the daemon
# (metadata service, DHCP and DNS, EC2 endpoint); through the EC2
# endpoint make a VPC, a subnet, a security group and a key pair and
# launch an instance there with a user-data script: Debian's own
# cloud-init finds EC2 by itself and configures it from DHCP and the
# metadata service. Log in with the endpoint's key pair (a wrong key is
# refused), stop it, save it as an image (its disk has the file written
# before the stop; the first image's does not). Then the README's CI
# example, as written, with `gureum run` in the default VPC: a failing
# test's status and its report come out and nothing is left; a job
# killed with SIGKILL midway leaves nothing either. Cases print
#   @@CASE <name> BEGIN ... @@CASE <name> RC <0 if every check passed>
# with "@@FAIL <what>" for each failed check and "key=value" results.
#
# Memory: every file here is in L1's RAM (rootfs, /tmp), so each disk
# copy costs its size (tests/rig_debian.rs gives L1 3 GiB); instances are
# terminated as soon as they have been checked, and one Debian guest
# boots at a time (two at once: L1, nested SVM under TCG, most often dies).
set -u
# Full paths: L1's busybox sh runs its own applets (tar) first, and this
# needs GNU tar's sparse files.
TAR=/usr/bin/tar
export GUREUM_STATE_DIR=/tmp/gureum-state
P=$RIG_PAYLOAD/debian
# The README's CI example blocks (tests/rig_debian.rs extracts them).
CI=$RIG_PAYLOAD/ci-example
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
# A key that is not the instance's (the endpoint makes that one).
gureum key create otherkey 2>&1 || fail "key create otherkey"
[ -s /tmp/otherkey.pem ] || fail "no private key file"
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
ec2() {  # PARAMS [CURL_ARGS...]: the response in $xml; a failed call is a failed check
  params=$1
  shift
  xml=$(curl -s --aws-sigv4 aws:amz:us-east-1:ec2 --user "$CREDENTIALS" \
    --data "Version=2016-11-15&$params" "$@" "$API") || { fail "curl $params"; xml=; return 1; }
  case $xml in *"<Errors>"*) fail "$params: $xml"; return 1 ;; esac
}
field() {  # TAG: the first <TAG>value</TAG> of $xml
  printf '%s\n' "$xml" | sed -n "s:.*<$1>\([^<]*\)</$1>.*:\1:p" | head -n 1
}

# The EC2 endpoint: a VPC, subnet, security group and key pair made
# through it hold an instance launched through it, with user data, and
# reached by SSH with the key pair it handed out, from inside the VPC's
# namespace. (`gureum run`, its --wait ssh and the default VPC are the CI
# example's, below.)
begin_checks run
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
# User data: a shell script cloud-init runs once, at the end of the
# first boot; what it prints reaches the console.
printf '%s\n' '#!/bin/sh' 'echo "@@USER-DATA ran as $(id -un) on $(hostname)"' \
  'echo done >/var/lib/user-data-ran' >/tmp/user-data.sh
t0=$(now)
ec2 "Action=RunInstances&ImageId=$(describe image debian-12 id)&InstanceType=t2.nano&MinCount=1&MaxCount=1&KeyName=apikey&SubnetId=$subnet&SecurityGroupId.1=$sg&PrivateIpAddress=10.9.1.10&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web-1" \
  --data-urlencode "UserData=$(base64 /tmp/user-data.sh | tr -d "\n")"
id1=$(field instanceId)
echo "launched $id1 vpc=$vpc subnet=$subnet sg=$sg"
state=
[ -n "$id1" ] || state=none
until [ "$state" = running ] || [ "$state" = none ]; do
  ec2 "Action=DescribeInstances&InstanceId.1=$id1"; state=$(field name)
  [ "$(elapsed "$t0" | cut -d. -f1)" -ge 120 ] && break
  sleep 1
done
echo "api_state=$state"
if wait_ssh "$id1" /tmp/apikey.pem; then
  echo "boot_to_ssh_seconds=$(elapsed "$t0")"
else
  fail "SSH never accepted the endpoint's key pair"
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
ssh_as /tmp/apikey.pem "$id1" 'timeout 300 cloud-init status --wait >/dev/null; cloud-init status --long
  sudo grep -E "WARNING|ERROR|Traceback" /var/log/cloud-init.log | head -n 20' 2>&1
ssh_as /tmp/apikey.pem "$id1" '
  echo "cloud_id=$(cloud-id)"
  echo "ds_identify=$(sed -n "s/^datasource_list: *//p" /run/cloud-init/cloud.cfg)"
  echo "dhcp_address=$(sudo sed -n "s/^ADDRESS=//p" /run/systemd/netif/leases/* | head -n 1)"
  echo "address=$(ip -4 -o addr show dev eth0 | sed -n "s|.* inet \([0-9.]*\)/.*|\1|p")"
  echo "hostname=$(hostname)"
  echo "user_data_file=$(cat /var/lib/user-data-ran)"
  echo "resolver=$(sed -n "s/^nameserver //p" /run/systemd/resolve/resolv.conf | head -n 1)"
  # Another address of the VPC: its name is not in /etc/hosts.
  echo "resolved=$(getent hosts ip-10-9-1-9.ec2.internal | cut -d" " -f1)"
  sudo cloud-init analyze show 2>/dev/null | grep -E "^(Finished|Total)" | tail -n 6
' 2>&1 || fail "cannot read what cloud-init did"
echo "user_data_console=$(gureum instance logs "$id1" | tr -d '\r' | sed -n 's/.*@@USER-DATA //p' | tail -n 1)"
end_checks cloud-init

# `gureum ssh` finds the address (in the VPC) and the image's user;
# the remote command's exit status is its own.
begin_checks ssh
out=$(gureum ssh "$id1" -i /tmp/apikey.pem -- \
  'echo "hostname=$(hostname)"; echo "user=$(id -un)"; sudo -n true && echo sudo=ok; echo "root=$(findmnt -n -o SOURCE /)"
   f=$(systemctl list-units --failed --plain --no-legend | cut -d" " -f1 | tr "\n" " "); echo "failed_units=${f:-none}"
   sudo -n modprobe dummy && grep -q "^dummy " /proc/modules && echo modprobe=ok' 2>&1) ||
  fail "gureum ssh with the key pair: $out"
echo "$out"
gureum ssh "$id1" -i /tmp/apikey.pem -- 'exit 7'
echo "exit_status=$?"
# gureum cp: a directory in, a file made from it out.
mkdir -p /tmp/tree/sub && echo hello >/tmp/tree/sub/file
gureum cp -i /tmp/apikey.pem /tmp/tree "$id1:/tmp/" || fail "gureum cp into $id1"
gureum ssh "$id1" -i /tmp/apikey.pem -- 'tr a-z A-Z </tmp/tree/sub/file >/tmp/report' ||
  fail "no report made in $id1"
gureum cp -i /tmp/apikey.pem "$id1:/tmp/report" /tmp/report || fail "gureum cp out of $id1"
echo "copied_back=$(cat /tmp/report 2>&1)"
# Where the boot time goes (printed for people, not checked).
ssh_as /tmp/apikey.pem "$id1" 'sudo systemd-analyze time; sudo systemd-analyze blame | head -n 12' 2>&1
hostkey1=$(ssh_as /tmp/apikey.pem "$id1" 'cat /etc/ssh/ssh_host_ed25519_key.pub' 2>/dev/null)
end_checks ssh

begin_checks wrong-key
if out=$(ssh_as /tmp/otherkey.pem "$id1" true 2>&1); then
  fail "a wrong key was accepted"
fi
echo "$out"
case $out in *"Permission denied"*) echo "refused=yes" ;; *) fail "no 'Permission denied': $out" ;; esac
end_checks wrong-key

# The file and the host key are on the instance's disk when it stops
# (stop/start itself is rig_instances', with busybox): its saved image's
# disk is read with debugfs rather than booted (a Debian boot is minutes
# of the rig's time).
begin_checks persist
ssh_as /tmp/apikey.pem "$id1" 'echo gureum-was-here | sudo tee /var/lib/marker >/dev/null && sync' ||
  fail "cannot write the marker"
t0=$(uptime_s)
gureum instance stop "$id1" --timeout 30 2>&1 || fail "stop"
gureum instance wait "$id1" --state stopped --timeout 60 || fail "never stopped"
# systemd-logind powers off on the ACPI power button.
echo "stop_s=$(($(uptime_s) - t0))"
echo "state=$(describe instance "$id1" state)"
echo "reason=$(describe instance "$id1" state_reason)"
end_checks persist

begin_checks image-create
gureum image create --instance "$id1" --name debian-marked 2>&1 || fail "image create"
gureum image describe debian-marked | grep source_instance
ec2 "Action=TerminateInstances&InstanceId.1=$id1"
gureum instance wait "$id1" --state terminated --timeout 60 || fail "$id1 never terminated"
ec2 "Action=DeleteSecurityGroup&GroupId=$sg"
ec2 "Action=DeleteSubnet&SubnetId=$subnet"
ec2 "Action=DeleteVpc&VpcId=$vpc"
disk=$GUREUM_STATE_DIR/images/$(describe image debian-marked id)/root.img
echo "marker=$(debugfs -R 'cat /var/lib/marker' "$disk" 2>/dev/null)"
[ "$(debugfs -R 'cat /etc/ssh/ssh_host_ed25519_key.pub' "$disk" 2>/dev/null)" = "$hostkey1" ] &&
  echo "hostkey_kept=yes"
# Its RAM is the CI example's.
gureum image rm debian-marked 2>&1 || fail "image rm debian-marked"
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

# What is left of instance ID: its files, a disk copy outside the
# images, a process naming it (its supervisor and VMM) or PATTERN (a
# command of the job), a difference between Linux and the records: one
# line for each, nothing if nothing.
left_of() {  # ID [PATTERN]
  [ -e "$GUREUM_STATE_DIR/instances/$1" ] && echo "files: $GUREUM_STATE_DIR/instances/$1"
  find "$GUREUM_STATE_DIR" -name root.img ! -path "*/images/*" | sed 's/^/disk copy: /'
  for f in /proc/[0-9]*/cmdline; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$f")
    case $cmd in *"$1"*|*"${2:-$1}"*) echo "process ${f%/cmdline}: $cmd" ;; esac
  done
  out=$(gureum net check 2>&1)
  [ "$out" = "Linux and the state directory match the records" ] || echo "net check: $out"
}
# Waits up to 90 s until nothing is left of instance ID (left_of);
# prints what is still there then.
await_nothing_left() {  # ID [PATTERN]
  t=$(now)
  while [ -n "$(left_of "$@")" ]; do
    [ "$(elapsed "$t" | cut -d. -f1)" -ge 90 ] && { left_of "$@"; return 1; }
    sleep 0.5
  done
}

# A job's working directory: the key pair's file and a source tree whose
# tests write their report and fail (status 3).
job_dir() {  # DIR
  mkdir -p "$1/src" && cp /tmp/ci/ci.pem "$1/" && cd "$1" || return 1
  printf '%s\n' '#!/bin/sh' \
    'printf "<testsuite tests=\"2\" failures=\"1\" host=\"%s\"/>\n" "$(hostname)" >report.xml' \
    'exit 3' >src/run-tests
  chmod +x src/run-tests
}

# The README's CI example as written (its two blocks, extracted by
# tests/rig_debian.rs). `gureum` on PATH is a wrapper that notes when
# each command starts and execs the real one (the same process: `run
# --rm`'s parent is still the job's shell); before `instance terminate`
# it notes the instance's state reason (a guest the rig crashed is
# retried once, visibly) and the console's last lines.
begin_checks ci-example
mkdir -p /tmp/ci /tmp/ci-bin
(cd /tmp/ci && sh "$CI/setup.sh") 2>&1 || fail "the setup block failed"
real=$(command -v gureum)
{
  echo '#!/bin/sh'
  echo 'echo "$(cut -d" " -f1 /proc/uptime) $1" >>/tmp/ci-steps'
  echo "[ \"\$1\" = instance ] && $real instance describe job 2>/dev/null | sed -n 's/^state_reason: *//p' >/tmp/ci-reason"
  echo "[ \"\$1\" = instance ] && $real instance logs job 2>/dev/null | tail -n 25 >/tmp/ci-console"
  echo "exec $real \"\$@\""
} >/tmp/ci-bin/gureum
chmod +x /tmp/ci-bin/gureum
for try in 1 2; do
  rm -rf /tmp/job /tmp/ci-steps /tmp/ci-reason /tmp/ci-console
  job_dir /tmp/job || fail "cannot make the job's directory"
  PATH=/tmp/ci-bin:$PATH sh "$CI/job.sh" >/tmp/job.out 2>&1
  status=$?
  t_end=$(now)
  cd /tmp
  case $(cat /tmp/ci-reason 2>/dev/null) in
    *"guest crashed"*)
      if [ $try = 1 ]; then
        echo "@@RETRY the CI example after a guest crash"
        sed -n '/^i-/{p;q}' /tmp/job.out >/tmp/ci-crashed
        continue
      fi ;;
  esac
  break
done
cat /tmp/job.out
echo "job_status=$status"
# Where the guest's console was when the job ended it, should the job
# have failed otherwise than by its tests (status 3).
[ "$status" = 3 ] || { echo "--- the job's console before terminate ---"; cat /tmp/ci-console 2>/dev/null; }
echo "report=$(cat /tmp/job/report.xml 2>&1)"
job_id=$(sed -n '/^i-/{p;q}' /tmp/job.out)
echo "job_instance=$job_id"
if [ -n "$job_id" ]; then
  gureum instance wait "$job_id" --state terminated --timeout 90 >/dev/null ||
    fail "$job_id never terminated"
  echo "job_state=$(describe instance "$job_id" state)"
  await_nothing_left "$job_id" || fail "something of $job_id is left"
  echo "nothing_left=yes"
else
  fail "the job printed no instance ID"
fi
# When each command started (the wrapper's notes), and the job's end:
# the wall time from `run` to the report on L1, and each step's share.
awk -v end="$t_end" '
  { t[NR] = $1 }
  END {
    t[NR + 1] = end
    split("run cp_in ssh_tests cp_out", step, " ")
    wall = t[5] - t[1]
    printf "ci_run_to_report_seconds=%.1f\n", wall
    for (i = 1; i <= 4; i++)
      printf "ci_step_%s_seconds=%.1f (%.0f%%)\n", step[i], t[i + 1] - t[i], 100 * (t[i + 1] - t[i]) / wall
    printf "ci_step_terminate_seconds=%.1f (after the report)\n", t[6] - t[5]
    printf "ci_commands=%d\n", NR
  }' /tmp/ci-steps
end_checks ci-example

# The same job killed with SIGKILL while `run --wait ssh` waits for its
# instance's SSH server (the instance runs: its disk copy, port and
# address are made): the instance goes with nothing left, and the job's
# `gureum run` ends (its instance is gone).
begin_checks ci-example-killed
job_dir /tmp/job2 || fail "cannot make the job's directory"
sh "$CI/job.sh" >/tmp/job2.out 2>&1 &
job=$!
cd /tmp
t=$(now) state=
until [ "$state" = running ]; do
  [ "$(elapsed "$t" | cut -d. -f1)" -ge 120 ] && { fail "the job's instance never ran"; break; }
  sleep 0.5
  state=$(describe instance job state 2>/dev/null)
done
killed_id=$(describe instance job id)
echo "killed_instance=$killed_id job=$job"
[ "$(describe instance job terminate_with.pid)" = "$job" ] && echo "terminate_with=the job's shell"
kill -9 "$job"
t=$(now)
await_nothing_left "$killed_id" " --rm" || fail "something of $killed_id is left"
echo "killed_to_nothing_left_seconds=$(elapsed "$t")"
echo "killed_state=$(describe instance "$killed_id" state)"
reason=$(describe instance "$killed_id" state_reason)
echo "killed_reason=$reason"
case $reason in *"process $job, whose end terminates it (run --rm), ended"*) echo "reason_names_the_job=yes" ;; esac
wait "$job" 2>/dev/null
echo "--- the killed job's output ---"
cat /tmp/job2.out
end_checks ci-example-killed

kill "$daemon"
wait "$daemon" 2>/dev/null
grep -i "dhcp\|metadata" /tmp/daemon.log
