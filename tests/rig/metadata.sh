#!/bin/sh
# The instance metadata service with a real guest, inside the nested KVM
# rig's L1, run by tests/rig_metadata.rs: `gureum daemon` serves it; a
# busybox instance whose tokens are required (scenario "imds") asks for
# an IMDSv2 token, reads its instance ID, identity document and user
# data with it, tries once without, and prints what it got on its
# console; then the default VPC's way to the world (case default-vpc).
# Cases print
#   @@CASE <name> BEGIN ... @@CASE <name> RC <0 if every check passed>
set -u
export GUREUM_STATE_DIR=/tmp/gureum-state

. /rig/cases.sh

begin_checks imds
# CPU figures every 10 s (rather than a minute) for case asg's policy.
gureum daemon --listen off --metrics-period 10 >/tmp/daemon.log 2>&1 &
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
# A kernel message can end up on the line of a value (seen: "i-…[ 9.2] IPv6: …").
for key in ID DOC-ID NO-TOKEN USER-DATA HOSTNAME DNS; do
  echo "$key=$(printf '%s\n' "$console" | sed -n "s/.*@@IMDS-$key //p" | tail -n 1 |
    sed 's/\[ *[0-9]*\.[0-9]*\] .*//')"
done
echo "store_ip=$(describe instance "$id" placement.private_ip)"
echo "lease=$(printf '%s\n' "$console" | sed -n 's/.*@@VPC-IP //p' | tail -n 1)"
printf '%s\n' "$console" | grep -i "dhcp" | grep -v "@@VPC-IP"
gureum instance terminate "$id" >/dev/null || fail "terminate"
gureum instance wait "$id" --state terminated >/dev/null || fail "terminated"
end_checks imds

# The default VPC and the world beyond the host. L1 plays the host,
# namespace "isp" the world behind its way out (L1 has no network of its
# own): a web server that answers the client's address and a DNS server
# that knows one name, which L1's resolv.conf names. A busybox instance
# launched with no network flags resolves that name through its VPC's
# resolver (which forwards to the host's), reaches the ISP seen as L1's
# address, and L1 reaches it at the public address it was given at launch,
# then at its elastic IP, which replaces that one. A daemon started with the
# uplink off cuts all three and leaves nothing of it in L1.
begin_checks default-vpc
IP=/usr/bin/ip
ISP=192.0.2.254
$IP netns add isp
$IP link add wan0 type veth peer name isp0 netns isp || fail "veth to the ISP"
$IP addr add 192.0.2.1/24 dev wan0
$IP link set wan0 up
$IP -n isp addr add $ISP/24 dev isp0
$IP -n isp link set isp0 up
$IP -n isp link set lo up
$IP route add default via $ISP || fail "default route"
peer_site /tmp/isp
$IP netns exec isp httpd -p 80 -h /tmp/isp || fail "httpd in isp"
$IP netns exec isp dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --pid-file= \
  --listen-address=$ISP --bind-interfaces --address=/www.example.test/$ISP ||
  fail "dnsmasq in isp"
echo "nameserver $ISP" >/etc/resolv.conf
id=$(gureum run --image busybox --type t2.nano --name web --cmdline-append rig.scenario=serve) ||
  fail "run: $id"
wait_log "$id" @@SERVING 1 240 || fail "$id never served"
echo "default_ip=$(describe instance "$id" placement.private_ip)"
echo "default_lease=$(gureum instance logs "$id" | tr -d '\r' | sed -n 's/.*@@VPC-IP //p' | tail -n 1)"
# The name's address (after "Name:"; the server's comes first), or FAILED.
resolve() {  # [NAME]
  guest "$id" "nslookup ${1:-www.example.test} | sed -n '/^Name:/,\$ s/^Address[: 0-9]*: *//p' | grep ."
}
echo "resolved=$(resolve)"
expect_fetch via_uplink "$id" http://www.example.test/cgi-bin/peer 192.0.2.1
gureum sg authorize-ingress "$(describe instance "$id" placement.security_groups.0)" \
  --protocol tcp --port 80 --cidr 0.0.0.0/0 >/dev/null || fail "default group :80"
# The default subnet gave it a public address at launch (MapPublicIpOnLaunch):
# L1 reaches it there, and the guest reads it from the metadata service.
public=$(describe instance "$id" placement.public_ip)
echo "public_ip=$public"
got=$(timeout 10 wget -q -O - "http://$public/cgi-bin/peer" 2>&1) || got=FAILED
echo "host_to_public_seen_as=$got"
echo "imds_public_ipv4=$(guest "$id" "wget -q -O - http://169.254.169.254/latest/meta-data/public-ipv4")"
gureum eip allocate --name e >/dev/null || fail "eip allocate"
gureum eip associate e --instance "$id" >/dev/null || fail "eip associate"
eip=$(describe eip e public_ip)
echo "eip=$eip"
got=$(timeout 10 wget -q -O - "http://$eip/cgi-bin/peer" 2>&1) || got=FAILED
echo "host_to_eip_seen_as=$got"
# The elastic IP takes its place: the address it was given went back.
echo "public_ip_with_eip=$(describe instance "$id" placement.public_ip)"
echo "imds_public_ipv4_with_eip=$(guest "$id" "wget -q -O - http://169.254.169.254/latest/meta-data/public-ipv4")"
got=$(timeout 5 wget -q -O - "http://$public/cgi-bin/peer" 2>&1) || got=FAILED
echo "host_to_released=$got"
end_checks default-vpc

# Three busybox web servers behind an internet-facing network load
# balancer in the default VPC, asked from the ISP (routed to the public
# pool through L1): requests spread over all three; one's VMM stopped, it
# turns unhealthy (after interval x unhealthy threshold, 2 s x 2 here)
# and no request fails after that; started again, it comes back; a
# security group that does not admit the balancer makes its target
# unhealthy.
begin_checks nlb
$IP -n isp route add 203.0.113.0/24 via 192.0.2.1 || fail "isp route to the public pool"
vpc=$(describe instance "$id" placement.vpc_id)
subnet=$(describe instance "$id" placement.subnet_id)
web2=$(gureum run --image busybox --type t2.nano --name web-2 --no-associate-public-ip-address \
  --cmdline-append rig.scenario=serve) || fail "run web-2: $web2"
wait_log "$web2" @@SERVING 1 240 || fail "$web2 never served"
web3=$(gureum run --image busybox --type t2.nano --name web-3 --no-associate-public-ip-address \
  --cmdline-append rig.scenario=serve) || fail "run web-3: $web3"
wait_log "$web3" @@SERVING 1 240 || fail "$web3 never served"
gureum target-group create --name web --vpc "$vpc" --port 80 --health-protocol http \
  --health-path /self --health-interval 2 --health-timeout 2 --healthy-threshold 2 \
  --unhealthy-threshold 2 --deregistration-delay 4 >/dev/null || fail "target-group create"
gureum target-group register web --target "$id" --target "$web2" --target "$web3" >/dev/null ||
  fail "register"
gureum elb create --name front --subnet "$subnet" --scheme internet-facing >/dev/null || fail "elb create"
gureum elb listener create front --port 80 --target-group web >/dev/null || fail "listener create"
lb=$(describe elb front public_ip)
echo "lb_public=$lb"
# Its DNS name, answered by the VPC's resolver with its public address.
echo "lb_name_resolved=$(resolve "$(describe elb front dns_name)")"
servers=$(for i in "$id" "$web2" "$web3"; do describe instance "$i" placement.private_ip; done | sort | tr '\n' ' ')
echo "servers=$servers"
echo "web2_ip=$(describe instance "$web2" placement.private_ip)"
echo "web3_ip=$(describe instance "$web3" placement.private_ip)"
# Target IDs of target group GROUP with their states, on one line:
# "i-… healthy i-… healthy ...".
states() {  # GROUP
  gureum target-group health "$1" | awk 'NR > 1 { printf "%s %s ", $1, $3 }'
}
# Waits up to 90 s until target ID of GROUP is in STATE and every other
# healthy; prints the milliseconds it took.
wait_states() {  # GROUP ID STATE
  t0=$(awk '{ printf "%d", $1 * 1000 }' /proc/uptime) n=0
  while :; do
    now=$(states "$1")
    others=$(echo "$now" | awk -v id="$2" '{ for (i = 1; i < NF; i += 2) if ($i != id && $(i + 1) != "healthy") n++ } END { print n + 0 }')
    case " $now" in *" $2 $3 "*) [ "$others" -eq 0 ] && break ;; esac
    n=$((n + 1))
    [ $n -gt 450 ] && { echo "never $2 $3: $now"; return 1; }
    sleep 0.2
  done
  echo $(($(awk '{ printf "%d", $1 * 1000 }' /proc/uptime) - t0))
}
# What N requests from the ISP to URL got (each a new connection), as a
# sorted set; "failed" stands for any request that failed. (`timeout`,
# not wget's -T: L1's static busybox wget dies of SIGSEGV with -T.)
spread() {  # N URL
  i=0
  while [ $i -lt "$1" ]; do
    i=$((i + 1))
    $IP netns exec isp timeout 5 wget -q -O - "$2" 2>/dev/null || echo failed
  done | sort -u | tr '\n' ' '
}
wait_states web "$id" healthy >/dev/null || fail "the targets never all healthy: $(states web)"
echo "spread_all=$(spread 30 "http://$lb/self")"
echo "client_seen_as=$($IP netns exec isp timeout 5 wget -q -O - "http://$lb/cgi-bin/peer" 2>&1 || echo FAILED)"
# web-2's VMM ends (stop --force kills it): out of rotation.
gureum instance stop --force "$web2" >/dev/null || fail "stop web-2"
ms=$(wait_states web "$web2" unhealthy) || fail "web-2 never unhealthy: $ms"
echo "unhealthy_after_ms=$ms"
echo "spread_without_web2=$(spread 30 "http://$lb/self")"
gureum instance start "$web2" >/dev/null || fail "start web-2"
wait_log "$web2" @@SERVING 2 240 || fail "$web2 never served again"
wait_states web "$web2" healthy >/dev/null || fail "web-2 never healthy again: $(states web)"
echo "spread_back=$(spread 30 "http://$lb/self")"
# A group admitting only some other address: web-3 fails its checks.
default_sg=$(describe instance "$web3" placement.security_groups.0)
gureum sg create --vpc "$vpc" --name narrow >/dev/null || fail "sg narrow"
gureum sg authorize-ingress narrow --protocol tcp --port 80 --cidr 10.9.9.9/32 >/dev/null ||
  fail "narrow :80"
gureum instance modify "$web3" --sg narrow >/dev/null || fail "modify web-3"
wait_states web "$web3" unhealthy >/dev/null || fail "web-3 never unhealthy: $(states web)"
echo "spread_fenced=$(spread 30 "http://$lb/self")"
gureum instance modify "$web3" --sg "$default_sg" >/dev/null || fail "web-3 back in the default group"
gureum sg delete narrow >/dev/null || fail "sg delete narrow"
gureum elb delete front >/dev/null || fail "elb delete"
gureum target-group delete web >/dev/null || fail "target-group delete"
end_checks nlb

# An internet-facing application load balancer over the same servers:
# rules send /a/* to group "a" (web and web-2, also the listener's
# default) and /b/* to group "b" (web-3); the servers see the ISP's
# address in X-Forwarded-For.
begin_checks alb
for g in a b; do
  gureum target-group create --name "$g" --vpc "$vpc" --protocol http --port 80 \
    --health-path /self --health-interval 2 --health-timeout 2 --healthy-threshold 2 \
    --unhealthy-threshold 2 --deregistration-delay 4 >/dev/null || fail "target-group create $g"
done
gureum target-group register a --target "$id" --target "$web2" >/dev/null || fail "register a"
gureum target-group register b --target "$web3" >/dev/null || fail "register b"
gureum elb create --name app --type application --subnet "$subnet" --scheme internet-facing >/dev/null ||
  fail "elb create app"
gureum elb listener create app --port 80 --target-group a >/dev/null || fail "listener create app"
gureum elb rule create app --listener 80 --priority 10 --path '/b/*' --target-group b >/dev/null ||
  fail "rule create /b/*"
gureum elb rule create app --listener 80 --priority 20 --path '/a/*' --target-group a >/dev/null ||
  fail "rule create /a/*"
app=$(describe elb app public_ip)
echo "app_public=$app"
wait_states a "$id" healthy >/dev/null || fail "group a never healthy: $(states a)"
wait_states b "$web3" healthy >/dev/null || fail "group b never healthy: $(states b)"
echo "alb_default=$(spread 20 "http://$app/a/self")"
echo "alb_rule_b=$(spread 20 "http://$app/b/self")"
echo "alb_xff=$(spread 1 "http://$app/cgi-bin/xff")"
gureum elb delete app >/dev/null || fail "elb delete app"
for g in a b; do gureum target-group delete "$g" >/dev/null || fail "target-group delete $g"; done
for i in "$web2" "$web3"; do
  gureum instance terminate "$i" >/dev/null || fail "terminate $i"
  gureum instance wait "$i" --state terminated >/dev/null || fail "$i terminated"
done
$IP -n isp route del 203.0.113.0/24
end_checks alb

# An Auto Scaling group of 2 (min 2, max 4) over two subnets of the
# default VPC, from a launch template of the busybox image, its members
# registered in a target group: one is launched in each subnet; a member
# whose VMM is killed is replaced by a new one, registered in its stead;
# the desired capacity set to 3 grows the group, set back to 2 shrinks
# it; a CPU load in its guests scales it out to 4 and idleness back to 2;
# a forced delete takes its instances with it.
begin_checks asg
gureum subnet create --vpc "$vpc" --cidr 172.31.16.0/20 --name second >/dev/null || fail "subnet second"
gureum template create --name small --image busybox --type t2.nano \
  --cmdline-append rig.scenario=serve >/dev/null || fail "template create"
gureum target-group create --name pool --vpc "$vpc" --port 80 >/dev/null || fail "target-group pool"
gureum asg create --name front --template small --subnet "$subnet" --subnet second --min 2 --max 4 \
  --target-group pool --health-check-grace-period 5 >/dev/null || fail "asg create"
# The group's members and the targets of group pool: sorted IDs on a line.
members() { gureum asg describe front | sed -n 's/^instances\.[0-9]*\.instance_id: *//p' | sort | tr '\n' ' '; }
registered() { gureum target-group health pool | awk 'NR > 1 { print $1 }' | sort | tr '\n' ' '; }
# Waits up to 240 s until the group has N members, none of them GONE,
# each running and each registered in pool; prints how long it took.
wait_group() {  # N [GONE]
  t0=$(uptime_s)
  while :; do
    m=$(members) running=0
    for i in $m; do [ "$(describe instance "$i" state)" = running ] && running=$((running + 1)); done
    case " $m" in *" ${2:-none} "*) ;; *)
      [ "$running" -eq "$1" ] && [ "$(echo $m | wc -w)" -eq "$1" ] && [ "$(registered)" = "$m" ] &&
        { echo "$(($(uptime_s) - t0))"; return 0; } ;;
    esac
    if [ $(($(uptime_s) - t0)) -gt 240 ]; then
      echo "group: $m ($running running); pool: $(registered);" \
        "desired $(describe asg front desired_capacity); CPU %:" \
        $(for i in $m; do gureum instance describe "$i" | sed -n 's/^cpu_utilization\.[0-9]*\.percent: *//p' | tr '\n' ,; done)
      return 1
    fi
    sleep 1
  done
}
s=$(wait_group 2) || fail "the group never had 2 running members: $s"
first=$(members)
echo "subnets_used=$(for i in $first; do describe instance "$i" placement.subnet_id; done | sort -u | wc -l)"
victim=${first%% *}
pid=$(vmm_pid "$victim")
echo "victim_vmm=${pid:-none}"
kill -9 $pid
s=$(wait_group 2 "$victim") || fail "$victim was never replaced: $s"
echo "replaced_after_s=$s"
echo "victim_state=$(describe instance "$victim" state)"
echo "members_after=$(members | wc -w) kept=$(for i in $first; do [ "$i" = "$victim" ] || case " $(members)" in *" $i "*) echo yes ;; esac; done)"
gureum asg set-desired-capacity front --desired 3 >/dev/null || fail "desired 3"
s=$(wait_group 3) || fail "the group never grew to 3: $s"
echo "grown_to=3"
gureum asg set-desired-capacity front --desired 2 >/dev/null || fail "desired 2"
s=$(wait_group 2) || fail "the group never shrank to 2: $s"
echo "shrunk_to=2"
# A target-tracking policy on the average CPU: a CPU burner in both
# guests takes the group out to its max of 4; stopped, back to 2. The
# target is 10 %: two burners share L1's two CPUs with everything else,
# which bounds their figures (at 50 % the group went out to 4 and, once
# the new guests had figures, back in, terminating the burners); idle
# guests use a few per cent.
gureum asg put-policy front --name cpu10 --target-cpu 10 >/dev/null || fail "put-policy"
burners=
for i in $(members); do
  burners="$burners $i:$(guest "$i" "sh -c 'while :; do :; done' >/dev/null 2>&1 & echo \$!")"
done
echo "burners=$burners"
s=$(wait_group 4) || fail "the load never took the group out to 4: $s"
echo "scaled_out_to=4"
echo "scaled_out_after_s=$s"
for b in $burners; do
  [ "$(describe instance "${b%%:*}" state)" = running ] && guest "${b%%:*}" "kill ${b#*:}" >/dev/null
done
s=$(wait_group 2) || fail "idleness never took the group back to 2: $s"
echo "scaled_in_to=2"
echo "scaled_in_after_s=$s"
last=$(members)
gureum asg delete front --force-delete >/dev/null || fail "asg delete"
for i in $last; do
  gureum instance wait "$i" --state terminated --timeout 120 >/dev/null || fail "$i not terminated"
done
gureum target-group delete pool >/dev/null || fail "target-group delete pool"
gureum template rm small >/dev/null || fail "template rm"
gureum subnet delete second >/dev/null || fail "subnet delete second"
end_checks asg

begin_checks uplink-off
kill "$daemon"
wait "$daemon" 2>/dev/null
GUREUM_UPLINK=none gureum daemon --listen off >/tmp/daemon-off.log 2>&1 &
daemon=$!
t0=$(uptime_s)
until gureum daemon --check >/dev/null 2>&1; do
  [ $(($(uptime_s) - t0)) -gt 60 ] && { fail "the second daemon never answered"; break; }
  sleep 0.2
done
# Its DHCP and DNS thread restarts the VPC's server without upstreams.
sleep 3
expect_fetch uplink_off "$id" http://$ISP/cgi-bin/peer FAILED
got=$(timeout 5 wget -q -O - "http://$eip/cgi-bin/peer" 2>&1) || got=FAILED
echo "uplink_off_host_to_eip=$got"
echo "uplink_off_resolved=$(resolve)"
nft list tables | grep gureum && fail "the uplink's table outlived it"
$IP -o link | grep ' gu' && fail "the uplink's link outlived it"
gureum instance terminate "$id" >/dev/null || fail "terminate"
gureum instance wait "$id" --state terminated >/dev/null || fail "terminated"
gureum eip release e >/dev/null || fail "eip release"
$IP route del default
$IP link del wan0
$IP netns del isp
end_checks uplink-off

kill "$daemon"
wait "$daemon" 2>/dev/null
grep -i "metadata\|dhcp" /tmp/daemon.log /tmp/daemon-off.log || echo "(the daemons said nothing of metadata or DHCP)"
