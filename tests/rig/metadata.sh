#!/bin/sh
# The instance metadata service with a real guest, inside the nested KVM
# rig's L1, run by tests/rig_metadata.rs: `gureum daemon` serves it; a
# busybox instance whose tokens are required (scenario "imds") asks for
# an IMDSv2 token, reads its instance ID, identity document and user
# data with it, tries once without, and prints what it got on its
# console. Prints the case
#   @@CASE imds BEGIN ... @@CASE imds RC <0 if every check passed>
set -u
export GUREUM_STATE_DIR=/tmp/gureum-state

. /rig/cases.sh

begin_checks imds
gureum daemon --listen off >/tmp/daemon.log 2>&1 &
daemon=$!
t0=$(uptime_s)
until gureum daemon --check >/dev/null 2>&1; do
  [ $(($(uptime_s) - t0)) -gt 60 ] && { fail "the daemon never answered"; cat /tmp/daemon.log; break; }
  sleep 0.2
done
gureum image import /rig/guest >/dev/null 2>&1 || fail "image import"
gureum vpc create --cidr 10.0.0.0/16 --name v >/dev/null || fail "vpc create"
gureum subnet create --vpc v --cidr 10.0.1.0/24 --name a >/dev/null || fail "subnet create"
printf 'hello-from-user-data' >/tmp/user-data
id=$(gureum run --image busybox --type t2.nano --subnet a --user-data /tmp/user-data \
  --metadata-options HttpTokens=required --cmdline-append rig.scenario=imds) || fail "run: $id"
wait_log "$id" @@IMDS-USER-DATA 1 240 || fail "the guest never reported"
console=$(gureum instance logs "$id" | tr -d '\r')
echo "store_id=$id"
for key in ID DOC-ID NO-TOKEN USER-DATA HOSTNAME DNS; do
  echo "$key=$(printf '%s\n' "$console" | sed -n "s/.*@@IMDS-$key //p" | tail -n 1)"
done
echo "store_ip=$(describe instance "$id" placement.private_ip)"
echo "lease=$(printf '%s\n' "$console" | sed -n 's/.*@@VPC-IP //p' | tail -n 1)"
printf '%s\n' "$console" | grep -i "dhcp" | grep -v "@@VPC-IP"
gureum instance terminate "$id" >/dev/null || fail "terminate"
gureum instance wait "$id" --state terminated >/dev/null || fail "terminated"
kill "$daemon"
wait "$daemon" 2>/dev/null
grep -i "metadata\|dhcp" /tmp/daemon.log
end_checks imds
