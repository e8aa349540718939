package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The parts of a range "FIRST-LAST", as CEL expressions over self (the
// AddressRange string). Spaces around the dash are allowed, as MetalLB
// allows them.
const (
	isRange  = "self.contains('-')"
	twoParts = "self.split('-').size() == 2"
	first    = "self.split('-')[0].trim()"
	last     = "self.split('-')[1].trim()"
)

// rule is one XValidation marker: the value must satisfy require unless one
// of the conditions in unless holds (they say when the rule does not
// apply, because an earlier rule already reports the problem).
type rule struct {
	unless  []string
	require string
	// message is a CEL expression that builds the error message.
	message string
}

// notARangeOfTwoIPs are the conditions under which a rule about a range's
// two ends does not apply: not a range, or one whose ends are not both IP
// addresses (the second rule reports those).
var notARangeOfTwoIPs = []string{
	"!" + isRange,
	"self.split('-').size() != 2",
	"!isIP(" + first + ")",
	"!isIP(" + last + ")",
}

// rules are AddressRange's rules, in the order they appear in the file.
func rules() []rule {
	return []rule{{
		// A value without a dash is a CIDR.
		unless:  []string{isRange},
		require: "isCIDR(self)",
		message: `'"' + self + '" is neither a CIDR (like 198.51.100.0/24 or 2001:db8::/120) nor a range FIRST-LAST'`,
	}, {
		// A value with a dash is two IP addresses joined by one dash.
		unless:  []string{"!" + isRange},
		require: "(" + twoParts + " && isIP(" + first + ") && isIP(" + last + "))",
		message: `'range "' + self + '" must be two IP addresses joined by one dash, like 198.51.100.10-198.51.100.20'`,
	}, {
		// Both ends are of one family.
		unless:  notARangeOfTwoIPs,
		require: "ip(" + first + ").family() == ip(" + last + ").family()",
		message: `'range "' + self + '" mixes IPv4 and IPv6; use one range per family'`,
	}, {
		// FIRST is not after LAST. CEL cannot compare addresses, so: find
		// the first bit where the two ends differ (the prefix length i
		// where FIRST/i still holds LAST and FIRST/i+1 does not) and
		// require FIRST to have a 0 there (FIRST/i+1 masked is FIRST/i
		// masked). Equal ends are fine.
		unless: append(append([]string{}, notARangeOfTwoIPs...),
			"ip("+first+").family() != ip("+last+").family()",
			"ip("+first+") == ip("+last+")"),
		require: "(ip(" + first + ").family() == 4 ? " + intList(32) + " : " + intList(128) + ")" +
			".exists(i, " +
			firstAsCIDR("i") + ".containsIP(" + last + ")" +
			" && !" + firstAsCIDR("i + 1") + ".containsIP(" + last + ")" +
			" && " + firstAsCIDR("i + 1") + ".masked().ip() == " + firstAsCIDR("i") + ".masked().ip())",
		message: `'range "' + self + '" starts after it ends; write the lower address first'`,
	}}
}

// firstAsCIDR is FIRST with the prefix length at index i (a CEL int
// expression) of the literal list of lengths 0 to 128.
func firstAsCIDR(i string) string {
	return "cidr(" + first + " + '/' + " + stringList(129) + "[" + i + "])"
}

// intList is the CEL list literal [0,1,...,n-1].
func intList(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = strconv.Itoa(i)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// stringList is the CEL list literal ['0','1',...,'n-1'].
func stringList(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = "'" + strconv.Itoa(i) + "'"
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// expression is the rule's CEL text: the conditions it does not apply
// under, then its requirement, joined by ||.
func (r rule) expression() string {
	return strings.Join(append(append([]string{}, r.unless...), r.require), " || ")
}

// marker is the rule as a kubebuilder marker comment line.
func (r rule) marker() string {
	return markerPrefix + "rule=" + strconv.Quote(r.expression()) + ",messageExpression=" + strconv.Quote(r.message)
}

const (
	markerPrefix = "// +kubebuilder:validation:XValidation:"
	typeLine     = "type AddressRange string"
)

// rewrite replaces the XValidation marker lines right above AddressRange's
// type declaration in src with the generated ones.
func rewrite(src []byte) ([]byte, error) {
	lines := bytes.Split(src, []byte("\n"))
	decl := -1
	for i, l := range lines {
		if string(l) == typeLine {
			decl = i
			break
		}
	}
	if decl < 0 {
		return nil, fmt.Errorf("celgen: %q not found", typeLine)
	}
	start := decl
	for start > 0 && bytes.HasPrefix(lines[start-1], []byte(markerPrefix)) {
		start--
	}
	if start == decl {
		return nil, errors.New("celgen: no XValidation markers right above " + typeLine)
	}
	var generated [][]byte
	for _, r := range rules() {
		generated = append(generated, []byte(r.marker()))
	}
	out := append(append(append([][]byte{}, lines[:start]...), generated...), lines[decl:]...)
	return bytes.Join(out, []byte("\n")), nil
}

func main() {
	file := flag.String("file", "ipaddresspool_types.go", "the Go file that declares AddressRange")
	flag.Parse()
	if err := run(*file); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(file string) error {
	src, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("celgen: %w", err)
	}
	out, err := rewrite(src)
	if err != nil {
		return err
	}
	if bytes.Equal(out, src) {
		return nil
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		return fmt.Errorf("celgen: %w", err)
	}
	return nil
}
