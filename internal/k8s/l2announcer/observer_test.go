package l2announcer

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/barelb/barelb/internal/layer2"
)

func TestKernelAnswers(t *testing.T) {
	p := netip.MustParsePrefix
	lan := layer2.Interface{Name: "eth0", Up: true, Prefixes: []netip.Prefix{p("198.51.100.11/24"), p("2001:db8:100::11/64")}}
	lanWithVIP := lan
	lanWithVIP.Prefixes = append([]netip.Prefix{p("198.51.100.200/32")}, lan.Prefixes...)
	lo := layer2.Interface{Name: "lo", Up: true, Loopback: true, Prefixes: []netip.Prefix{p("127.0.0.1/8")}}
	loVIP := lo
	loVIP.Prefixes = append([]netip.Prefix{p("198.51.100.200/32"), p("2001:db8:100::200/128")}, lo.Prefixes...)
	ipvs := layer2.Interface{Name: "kube-ipvs0", NoARP: true, Prefixes: []netip.Prefix{p("198.51.100.200/32"), p("198.51.100.201/32")}}
	v6only := layer2.Interface{Name: "eth1", Up: true, Prefixes: []netip.Prefix{p("2001:db8:200::11/64")}}
	vips := []netip.Addr{netip.MustParseAddr("198.51.100.201"), netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8:100::200")}
	ignore := func(all int, per map[string]int) func(string) int {
		return func(name string) int { return max(all, per[name]) }
	}
	tests := []struct {
		name      string
		host      []layer2.Interface
		arpIgnore func(string) int
		wantAddrs []string
		wantLANs  []string
	}{
		{name: "no address on a local interface: only the speaker answers", host: []layer2.Interface{lo, lan}, arpIgnore: ignore(0, nil)},
		{name: "kube-ipvs0 without strictARP", host: []layer2.Interface{lo, lan, ipvs}, arpIgnore: ignore(0, nil),
			wantAddrs: []string{"198.51.100.200", "198.51.100.201"}, wantLANs: []string{"eth0"}},
		{name: "kube-ipvs0 with strictARP (arp_ignore=1 on all)", host: []layer2.Interface{lo, lan, ipvs}, arpIgnore: ignore(1, nil)},
		{name: "arp_ignore=1 on the LAN interface alone is enough", host: []layer2.Interface{lo, lan, ipvs}, arpIgnore: ignore(0, map[string]int{"eth0": 1})},
		{name: "VIP on lo without strictARP; IPv6 is not ARP", host: []layer2.Interface{loVIP, lan}, arpIgnore: ignore(0, nil),
			wantAddrs: []string{"198.51.100.200"}, wantLANs: []string{"eth0"}},
		{name: "VIP on lo with strictARP", host: []layer2.Interface{loVIP, lan}, arpIgnore: ignore(1, nil)},
		{name: "VIP on the LAN interface itself: arp_ignore=1 does not help", host: []layer2.Interface{lo, lanWithVIP}, arpIgnore: ignore(1, nil),
			wantAddrs: []string{"198.51.100.200"}, wantLANs: []string{"eth0"}},
		{name: "VIP on the LAN interface with arp_ignore=8", host: []layer2.Interface{lo, lanWithVIP}, arpIgnore: ignore(8, nil)},
		{name: "an interface without IPv4 is no ARP LAN", host: []layer2.Interface{loVIP, v6only}, arpIgnore: ignore(0, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addrs, lans := KernelAnswers(vips, tt.host, tt.arpIgnore)
			var got []string
			for _, a := range addrs {
				got = append(got, a.String())
			}
			if diff := cmp.Diff(tt.wantAddrs, got); diff != "" {
				t.Errorf("KernelAnswers addresses (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantLANs, lans); diff != "" {
				t.Errorf("KernelAnswers LANs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestArpIgnore(t *testing.T) {
	tests := []struct {
		name      string
		all, eth0 string // "" leaves the file out
		want      int
	}{
		{name: "kernel default", all: "0\n", eth0: "0\n", want: 0},
		{name: "all wins when larger", all: "1\n", eth0: "0\n", want: 1},
		{name: "the interface wins when larger", all: "0\n", eth0: "2\n", want: 2},
		{name: "unreadable counts as 0", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, v := range map[string]string{"all": tt.all, "eth0": tt.eth0} {
				if v == "" {
					continue
				}
				dir := filepath.Join(root, "net", "ipv4", "conf", name)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "arp_ignore"), []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			o := &Observer{SysctlRoot: root}
			if got := o.arpIgnore("eth0"); got != tt.want {
				t.Errorf("arpIgnore(eth0) = %d, want %d", got, tt.want)
			}
		})
	}
}

// BenchmarkKernelAnswers checks the cost of a check on an IPVS node, where
// kube-ipvs0 holds every Service address (10,000 here).
func BenchmarkKernelAnswers(b *testing.B) {
	ipvs := layer2.Interface{Name: "kube-ipvs0", NoARP: true}
	var vips []netip.Addr
	ip := netip.MustParseAddr("10.96.0.0")
	for range 10000 {
		ip = ip.Next()
		vips = append(vips, ip)
		ipvs.Prefixes = append(ipvs.Prefixes, netip.PrefixFrom(ip, 32))
	}
	host := []layer2.Interface{{Name: "eth0", Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.11/24")}}, ipvs}
	for b.Loop() {
		if addrs, _ := KernelAnswers(vips, host, func(string) int { return 0 }); len(addrs) != len(vips) {
			b.Fatalf("%d addresses answered, want %d", len(addrs), len(vips))
		}
	}
}
