// Command celgen writes the CEL validation rules of AddressRange (in
// api/v1beta1/ipaddresspool_types.go) from the readable description below.
// The range-order rule is about 3,900 characters once spelled out: CEL
// cannot compare IP addresses, and the API server's cost estimator cannot
// bound a converted number or a nested list, so the prefix lengths must be
// written as flat literals. Nobody should keep that by hand.
//
// Run it with `go generate ./api/...`; `make check-generated` fails when
// the rules in the file differ from what celgen writes.
package main
