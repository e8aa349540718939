package v1beta1

// AddressRange's CEL rules are written by celgen from a readable
// description; `make check-generated` fails when they are stale.
//go:generate go run ./internal/celgen -file ipaddresspool_types.go
