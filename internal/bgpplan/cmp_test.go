package bgpplan

import (
	"net/netip"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/barelb/barelb/internal/config"
)

// cmpOpts let cmp.Diff compare plans: prefixes, addresses and
// communities by value.
var cmpOpts = cmp.Options{
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, config.Community{}),
}
