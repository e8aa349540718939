package lab

// EtherTypes of the packet sockets the lab listens on (ETH_P_ARP and
// ETH_P_IPV6 on Linux).
const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
)
