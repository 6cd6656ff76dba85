# Shared by the benchmark scripts (sourced, not run).

# veth_pair PREFIX: namespaces $NS_IN and $NS_OUT joined by a veth pair named PREFIX{i,o}$$,
# $NS_OUT at $PEER (an address ending in .1) and $NS_IN at .2 of its /24, IPv6 off, no
# routes beyond the pair: traffic can only go from one to the other.
veth_pair() {
	local prefix=$1
	ip netns add "$NS_IN"
	ip netns add "$NS_OUT"
	ip link add "${prefix}i$$" netns "$NS_IN" type veth peer name "${prefix}o$$" netns "$NS_OUT"
	for ns in "$NS_IN" "$NS_OUT"; do
		ip -n "$ns" link set lo up
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	done
	ip -n "$NS_IN" addr add "${PEER%.1}.2/24" dev "${prefix}i$$"
	ip -n "$NS_OUT" addr add "$PEER/24" dev "${prefix}o$$"
	ip -n "$NS_IN" link set "${prefix}i$$" up
	ip -n "$NS_OUT" link set "${prefix}o$$" up
}
