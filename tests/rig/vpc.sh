#!/bin/sh
# VPC networking end to end with real guests, inside the nested KVM rig's
# L1 (busybox sh, with iproute2 and nft shipped from the host), run by
# tests/rig_vpc.rs. Busybox instances run the image's "serve" scenario:
# HTTP on ports 80 and 8080 answering the client's address, and a shell
# on the console through which the test sends commands. A namespace made
# here, "inet", is the fake internet on gureum's public side.
# Cases print
#   @@CASE <name> BEGIN ... @@CASE <name> RC <0 if every check passed>
# with "@@FAIL <what>" for each failed check and "key=value" results.
set -u
export GUREUM_STATE_DIR=/tmp/gureum-state
IP=/usr/bin/ip
PREFIX=gureum-
INET=198.51.100.2

. /rig/cases.sh

launch() {  # NAME SUBNET SG IP
  gureum run --image busybox --type t2.nano --name "$1" --subnet "$2" --sg "$3" \
    --private-ip "$4" --cmdline-append rig.scenario=serve
}
no_gureum_left() {
  $IP netns list | grep "^$PREFIX" && fail "namespaces left: $($IP netns list | grep "^$PREFIX" | tr '\n' ' ')"
  tables=$(nft list tables) || fail "nft list tables failed"
  echo "$tables" | grep gureum && fail "nft tables left in L1's own namespace"
  $IP -o link | grep -E ' (t-|gp|gu)' && fail "links left in L1's own namespace"
  out=$(gureum net check 2>&1)
  echo "$out"
  [ "$out" = "Linux and the state directory match the records" ] || fail "net check: $out"
}

begin_checks setup
gureum image import /rig/guest >/dev/null 2>&1 || fail "image import"
gureum vpc create --cidr 10.0.0.0/16 --name v || fail "vpc create"
gureum subnet create --vpc v --cidr 10.0.1.0/24 --name a || fail "subnet a"
gureum subnet create --vpc v --cidr 10.0.2.0/24 --name b || fail "subnet b"
gureum sg create --vpc v --name web || fail "sg web"
gureum sg authorize-ingress web --protocol tcp --port 80 --cidr 10.0.0.0/16 || fail "web :80"
gureum sg authorize-ingress web --protocol icmp --cidr 10.0.0.0/16 || fail "web icmp"
gureum sg create --vpc v --name client || fail "sg client"
gureum sg create --vpc v --name other || fail "sg other"
# One after the other: guests booting at once are when L1 (nested SVM
# under TCG) most often dies.
s1=$(launch s1 a web 10.0.1.10) || fail "run s1: $s1"
wait_log "$s1" @@SERVING 1 240 || fail "$s1 never served"
c1=$(launch c1 a client 10.0.1.11) || fail "run c1: $c1"
wait_log "$c1" @@SERVING 1 240 || fail "$c1 never served"
b1=$(launch b1 b other 10.0.2.10) || fail "run b1: $b1"
wait_log "$b1" @@SERVING 1 240 || fail "$b1 never served"
echo "launched s1=$s1 c1=$c1 b1=$b1"
gureum instance list
end_checks setup

# The guest sees its instance's identity in the SMBIOS tables.
begin_checks identity
echo "asset_tag_is_id=$([ "$(guest "$s1" 'cat /sys/class/dmi/id/board_asset_tag')" = "$s1" ] && echo yes)"
echo "product_name=$(guest "$s1" 'cat /sys/class/dmi/id/product_name')"
echo "vendor=$(guest "$s1" 'cat /sys/class/dmi/id/sys_vendor')"
end_checks identity

# c1 (group "client": no inbound rules) gets s1's answers: the reply to
# its own flow is let in (stateful).
begin_checks same-subnet
expect_fetch same_subnet "$c1" http://10.0.1.10/cgi-bin/peer 10.0.1.11
end_checks same-subnet

begin_checks cross-subnet
expect_fetch cross_subnet "$b1" http://10.0.1.10/cgi-bin/peer 10.0.2.10
end_checks cross-subnet

begin_checks no-rule
expect_fetch no_rule_port "$c1" http://10.0.1.10:8080/cgi-bin/peer FAILED
expect_fetch no_inbound "$s1" http://10.0.1.11/cgi-bin/peer FAILED
end_checks no-rule

# A rule naming group "client" admits its members and nobody else.
begin_checks source-group
gureum sg authorize-ingress web --protocol tcp --port 8080 --source-group client || fail "authorize :8080"
expect_fetch member "$c1" http://10.0.1.10:8080/cgi-bin/peer 10.0.1.11
expect_fetch non_member "$b1" http://10.0.1.10:8080/cgi-bin/peer FAILED
end_checks source-group

# Changing a running instance's groups changes what reaches it at once:
# s1 moved to "other" (no inbound rules) takes nothing in; back in "web",
# it serves again.
begin_checks modify-groups
gureum instance modify s1 --sg other || fail "modify s1 --sg other"
[ "$(describe instance s1 placement.security_groups.0)" = "$(describe sg other id)" ] ||
  fail "s1's record does not name group other"
expect_fetch moved_out "$c1" http://10.0.1.10/cgi-bin/peer FAILED
gureum instance modify s1 --sg web || fail "modify s1 --sg web"
expect_fetch moved_back "$c1" http://10.0.1.10/cgi-bin/peer 10.0.1.11
end_checks modify-groups

# Rule changes reach the running instance at once.
begin_checks rule-change
gureum sg authorize-ingress client --protocol tcp --port 80 --cidr 10.0.0.0/16 || fail "authorize client :80"
expect_fetch after_authorize "$s1" http://10.0.1.11/cgi-bin/peer 10.0.1.10
gureum sg revoke-ingress client --protocol tcp --port 80 --cidr 10.0.0.0/16 || fail "revoke client :80"
expect_fetch after_revoke "$s1" http://10.0.1.11/cgi-bin/peer FAILED
end_checks rule-change

begin_checks egress
gureum sg revoke-egress other --protocol all --cidr 0.0.0.0/0 || fail "revoke egress"
expect_fetch egress_denied "$b1" http://10.0.1.10/cgi-bin/peer FAILED
gureum sg authorize-egress other --protocol all --cidr 0.0.0.0/0 || fail "authorize egress"
expect_fetch egress_allowed "$b1" http://10.0.1.10/cgi-bin/peer 10.0.2.10
end_checks egress

# A stream each way at once between s1 and c1 over subnet a's bridge:
# each downloads the other's random blob over HTTP, checksummed at both
# ends: 64 MiB each way (issue 11). It was 4 MiB while virtio-net moved a
# frame per exit and interrupt (0.3 MiB/s in the rig, and the rig's L2
# crashes came once every few minutes of such traffic); with segmentation
# offloads and EVENT_IDX it is one exit per 64 KiB.
STREAM_MIB=${STREAM_MIB:-64}
begin_checks stream
# A guest that crashes meanwhile is started again by guest() (see revive)
# but loses its blob: the stream is made once more, visibly.
revived() { ls /tmp/revived-* 2>/dev/null | wc -l; }
# In the first attempt, what a guest crash spoiled is shown, not failed:
# the retry decides.
stream_fail() {
  if [ "$forgive" = 1 ] && [ "$(revived)" != "$seen" ]; then echo "lost to the crash: $*"; else fail "$*"; fi
}
stream_once() {  # FORGIVE
  forgive=$1
  seen=$(revived)
  for i in "$s1" "$c1"; do
    # Numbered copies of 1 MiB of random bytes: faster to make than as many
    # random MiB in a nested guest, as sure to show a lost, doubled or
    # misplaced frame.
    # A retry's copies must not be mistaken for the first attempt's: a
    # survivor's old /tmp/got goes first.
    sum=$(guest "$i" "rm -f /tmp/got /tmp/got.part; dd if=/dev/urandom of=/tmp/r bs=64k count=16 2>/dev/null && for n in \$(seq $STREAM_MIB); do echo \"block \$n\"; cat /tmp/r; done >/www/blob && md5sum </www/blob")
    # The sum alone: a kernel message may share the console line.
    sum=$(echo "$sum" | grep -o '[0-9a-f]\{32\}' | head -n 1)
    [ -n "$sum" ] || stream_fail "$i made no blob"
    echo "$sum" >"/tmp/blob-$i"
  done
  t0=$(uptime_s)
  for pair in "$s1 10.0.1.11" "$c1 10.0.1.10"; do
    set -- $pair
    # A space after guest's "$(": "$((" would begin arithmetic.
    started=$(guest "$1" " (wget -q -O - http://$2/blob | md5sum >/tmp/got.part && mv /tmp/got.part /tmp/got) >/dev/null 2>&1 & echo started")
    [ "$started" = started ] || stream_fail "$1 did not start its download: $started"
  done
  for pair in "$s1 $c1" "$c1 $s1"; do
    set -- $pair
    until got=$(guest "$1" 'cat /tmp/got' | grep -o '[0-9a-f]\{32\}' | head -n 1) && [ -n "$got" ]; do
      [ $(($(uptime_s) - t0)) -gt 300 ] || [ "$(revived)" != "$seen" ] && break
      # A crashed server never finishes its client's download: it is
      # started again now, not waited out (CI once spent the suite's
      # whole time so).
      case $(describe instance "$2" state_reason) in
        *"guest crashed"*) revive "$2" stream; break ;;
      esac
      sleep 2
    done
    echo "$1 got ${got:-nothing} of $(cat "/tmp/blob-$2")"
    [ "$got" = "$(cat "/tmp/blob-$2")" ] || stream_fail "$1's copy of $2's blob differs: '$got'"
  done
  took=$(($(uptime_s) - t0))
}
gureum sg authorize-ingress client --protocol tcp --port 80 --cidr 10.0.1.10/32 || fail "authorize client :80"
before=$(revived)
stream_once 1
if [ "$(revived)" != "$before" ]; then
  echo "@@RETRY the stream after a guest crash"
  stream_once 0
fi
echo "stream_mib=$STREAM_MIB"
echo "stream_seconds=$took"
gureum sg revoke-ingress client --protocol tcp --port 80 --cidr 10.0.1.10/32 || fail "revoke client :80"
for i in "$s1" "$c1"; do guest "$i" 'rm -f /www/blob /tmp/got /tmp/r' >/dev/null; done
end_checks stream

# Source/destination check: c1 sending from an address or a MAC not its
# own gets nothing through (unless the check is off); with its own, it
# does.
begin_checks spoof
echo "own=$(guest "$c1" 'ping -c 2 -W 3 10.0.1.10 >/dev/null && echo ok')"
echo "forged_ip=$(guest "$c1" 'ip addr add 10.0.1.99/24 dev eth0 && ping -c 2 -W 3 -I 10.0.1.99 10.0.1.10 >/dev/null && echo ok')"
# With the check turned off for c1 (as for a NAT instance), the forged
# address passes; turned back on, it is dropped again.
gureum instance modify c1 --no-source-dest-check || fail "modify c1 --no-source-dest-check"
echo "forged_ip_unchecked=$(guest "$c1" 'ping -c 2 -W 3 -I 10.0.1.99 10.0.1.10 >/dev/null && echo ok')"
gureum instance modify c1 --source-dest-check || fail "modify c1 --source-dest-check"
echo "forged_ip_checked_again=$(guest "$c1" 'ping -c 2 -W 3 -I 10.0.1.99 10.0.1.10 >/dev/null && echo ok')"
guest "$c1" 'ip addr del 10.0.1.99/24 dev eth0' >/dev/null
mac=$(guest "$c1" 'cat /sys/class/net/eth0/address')
echo "forged_mac=$(guest "$c1" 'ip link set eth0 down && ip link set eth0 address 02:00:00:00:00:99 && ip link set eth0 up && ip neigh flush dev eth0 && ping -c 2 -W 3 10.0.1.10 >/dev/null && echo ok')"
echo "restored=$(guest "$c1" "ip link set eth0 down && ip link set eth0 address $mac && ip link set eth0 up && ip route add default via 10.0.1.1; ping -c 2 -W 3 10.0.1.10 >/dev/null && echo ok")"
end_checks spoof

# The fake internet: namespace "inet" at $INET, wired to gureum's public
# namespace (made by the first gateway attach) with an HTTP server that
# answers the client's address.
begin_checks internet
gureum igw create --name g || fail "igw create"
gureum igw attach g --vpc v || fail "igw attach"
pub=${PREFIX}public
$IP netns add inet
$IP link add i0 netns inet type veth peer name pi0 netns "$pub" || fail "veth to the public namespace"
$IP -n "$pub" addr add 198.51.100.1/24 dev pi0
$IP -n "$pub" link set pi0 up
$IP -n inet addr add $INET/24 dev i0
$IP -n inet link set i0 up
$IP -n inet link set lo up
$IP -n inet route add 203.0.113.0/24 via 198.51.100.1
peer_site /tmp/inet
$IP netns exec inet httpd -p 80 -h /tmp/inet || fail "httpd in inet"
gw_ip=$(describe igw g public_ip)
echo "gateway_ip=$gw_ip"
# Without a route to the gateway: no way out.
expect_fetch before_route "$c1" http://$INET/cgi-bin/peer FAILED
main=$(describe vpc v main_route_table)
gureum route-table create-route "$main" --destination 0.0.0.0/0 --gateway g || fail "create-route"
# Subnet b keeps a table of its own without that route: private.
gureum route-table create --vpc v --name private || fail "route-table create"
gureum route-table associate private --subnet b || fail "associate b"
expect_fetch via_gateway "$c1" http://$INET/cgi-bin/peer "$gw_ip"
expect_fetch private_subnet "$b1" http://$INET/cgi-bin/peer FAILED
end_checks internet

# An elastic IP on s1: the internet reaches s1 at it, and s1's own
# traffic leaves from it, also after a stop and start.
begin_checks eip
gureum sg authorize-ingress web --protocol tcp --port 80 --cidr 0.0.0.0/0 || fail "web :80 from anywhere"
gureum eip allocate --name e || fail "eip allocate"
eip=$(describe eip e public_ip)
echo "eip=$eip"
gureum eip list | grep -i held || fail "an unassociated EIP is not marked held"
gureum eip associate e --instance s1 || fail "eip associate"
got=$($IP netns exec inet timeout 10 wget -q -O - "http://$eip/cgi-bin/peer" 2>&1) || got=FAILED
echo "inbound_seen_as=$got"
[ "$got" = "$INET" ] || fail "the internet host reaching $eip got '$got'"
expect_fetch outbound_from_eip "$s1" http://$INET/cgi-bin/peer "$eip"
# One more @@SERVING than now (a guest crash retried earlier adds one).
served=$(gureum instance logs "$s1" | grep -c @@SERVING)
gureum instance stop s1 --timeout 30 || fail "stop s1"
gureum instance wait s1 --state stopped --timeout 60 || fail "s1 never stopped"
gureum instance start s1 || fail "start s1"
wait_log "$s1" @@SERVING $((served + 1)) 240 || fail "s1 not serving after start"
got=$($IP netns exec inet timeout 10 wget -q -O - "http://$eip/cgi-bin/peer" 2>&1) || got=FAILED
echo "after_restart_seen_as=$got"
[ "$got" = "$INET" ] || fail "after stop/start, reaching $eip got '$got'"
end_checks eip

# A second VPC with the same block: its instance, at c1's address, reaches
# the internet through its own gateway, and nothing of VPC v.
begin_checks two-vpcs
gureum vpc create --cidr 10.0.0.0/16 --name w || fail "vpc w"
gureum subnet create --vpc w --cidr 10.0.1.0/24 --name wa || fail "subnet wa"
gureum sg create --vpc w --name wweb || fail "sg wweb"
gureum sg authorize-ingress wweb --protocol tcp --port 80 --cidr 0.0.0.0/0 || fail "wweb :80"
gureum igw create --name g2 || fail "igw g2"
gureum igw attach g2 --vpc w || fail "attach g2"
gureum route-table create-route "$(describe vpc w main_route_table)" --destination 0.0.0.0/0 --gateway g2 ||
  fail "route w"
w1=$(launch w1 wa wweb 10.0.1.11) || fail "run w1: $w1"
wait_log "$w1" @@SERVING 1 240 || fail "w1 never served"
expect_fetch w_internet "$w1" http://$INET/cgi-bin/peer "$(describe igw g2 public_ip)"
expect_fetch v_internet "$c1" http://$INET/cgi-bin/peer "$gw_ip"
expect_fetch w_to_v "$w1" http://10.0.1.10/cgi-bin/peer FAILED
end_checks two-vpcs

begin_checks teardown
for i in $s1 $c1 $b1 $w1; do gureum instance terminate "$i" >/dev/null || fail "terminate $i"; done
for i in $s1 $c1 $b1 $w1; do
  gureum instance wait "$i" --state terminated --timeout 60 || fail "$i never terminated"
done
# As in EC2, terminating the instance took its elastic IP off it.
[ -z "$(describe eip e instance_id)" ] || fail "the EIP is still associated after terminate"
gureum eip release e || fail "eip release"
gureum route-table delete-route "$main" --destination 0.0.0.0/0 || fail "delete-route v"
gureum route-table delete-route "$(describe vpc w main_route_table)" --destination 0.0.0.0/0 || fail "delete-route w"
gureum route-table disassociate private --subnet b || fail "disassociate b"
gureum route-table delete private || fail "route-table delete"
$IP netns del inet
for g in g g2; do gureum igw detach $g && gureum igw delete $g || fail "igw $g"; done
for s in a b wa; do gureum subnet delete $s || fail "subnet $s"; done
for g in web client other wweb; do gureum sg delete $g || fail "sg $g"; done
gureum vpc delete v || fail "vpc delete v"
gureum vpc delete w || fail "vpc delete w"
no_gureum_left
end_checks teardown
