package servingcert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Default lifetimes: long enough that a renewal failing for days harms
// nothing, short enough that a leaked key does not last forever.
const (
	DefaultCertLifetime = 90 * 24 * time.Hour
	DefaultCALifetime   = 10 * 365 * 24 * time.Hour
)

// maxBackdate bounds how far NotBefore is set into the past, to tolerate
// clocks that differ between the controller and the API server.
const maxBackdate = time.Hour

// Bundle is the stored TLS material, PEM-encoded.
type Bundle struct {
	CACert, CAKey []byte
	Cert, Key     []byte
	// PreviousCAs are replaced CAs, still trusted until they expire.
	PreviousCAs []byte
}

// CABundle is what the API server must trust: the CA and every previous
// CA.
func (b *Bundle) CABundle() []byte {
	return append(append([]byte{}, b.CACert...), b.PreviousCAs...)
}

// Options say what certificates to make.
type Options struct {
	// DNSNames and IPAddresses are the serving certificate's names; the
	// API server checks the name it dials against them.
	DNSNames    []string
	IPAddresses []net.IP
	// CertLifetime and CALifetime default to DefaultCertLifetime and
	// DefaultCALifetime.
	CertLifetime, CALifetime time.Duration
}

func (o Options) withDefaults() Options {
	if o.CertLifetime <= 0 {
		o.CertLifetime = DefaultCertLifetime
	}
	if o.CALifetime <= 0 {
		o.CALifetime = DefaultCALifetime
	}
	return o
}

// Renew returns the bundle to store at now: stored itself when it is
// still good (changed false), or a bundle with a new CA and/or serving
// certificate (changed true) with reason saying why. stored may be nil or
// hold anything; what does not parse is replaced.
func Renew(stored *Bundle, o Options, now time.Time) (next *Bundle, changed bool, reason string, err error) {
	o = o.withDefaults()
	if stored == nil {
		stored = &Bundle{}
	}
	next = &Bundle{CACert: stored.CACert, CAKey: stored.CAKey, Cert: stored.Cert, Key: stored.Key}
	ca, caKey, caErr := parsePair(stored.CACert, stored.CAKey)
	var reasons []string
	var previous []*x509.Certificate
	for _, c := range parseCerts(stored.PreviousCAs) {
		if now.Before(c.NotAfter) {
			previous = append(previous, c)
		}
	}
	if !bytes.Equal(encodeCerts(previous), stored.PreviousCAs) {
		reasons = append(reasons, "dropped expired or unreadable previous CAs")
	}
	switch {
	case len(stored.CACert) == 0:
		reasons = append(reasons, "no CA stored yet")
	case caErr != nil:
		reasons = append(reasons, "no usable CA ("+caErr.Error()+")")
	case !ca.IsCA:
		caErr = errors.New("not a CA")
		reasons = append(reasons, "the stored CA certificate is not a CA")
	case dueForRenewal(ca, now):
		caErr = errors.New("due")
		reasons = append(reasons, fmt.Sprintf("CA expires at %s", ca.NotAfter.UTC().Format(time.RFC3339)))
		previous = append(previous, ca)
	}
	if caErr != nil {
		if ca, caKey, next.CACert, next.CAKey, err = newCA(o.CALifetime, now); err != nil {
			return nil, false, "", err
		}
	}
	next.PreviousCAs = encodeCerts(previous)
	if why := certProblem(next.Cert, next.Key, ca, o, now); why != "" {
		reasons = append(reasons, why)
		if next.Cert, next.Key, err = issue(ca, caKey, o, now); err != nil {
			return nil, false, "", err
		}
	}
	if len(reasons) == 0 {
		return stored, false, "", nil
	}
	return next, true, joinReasons(reasons), nil
}

// NextRenewal is when Renew will next change b (given the same options):
// when the first of its certificates enters the last third of its life.
func NextRenewal(b *Bundle) time.Time {
	var next time.Time
	for _, c := range append(parseCerts(b.CACert), parseCerts(b.Cert)...) {
		if at := renewalTime(c); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	for _, c := range parseCerts(b.PreviousCAs) {
		if next.IsZero() || c.NotAfter.Before(next) {
			next = c.NotAfter
		}
	}
	return next
}

// TLSCertificate is the serving certificate for a tls.Config.
func (b *Bundle) TLSCertificate() (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		return nil, fmt.Errorf("loading the serving certificate: %w", err)
	}
	return &c, nil
}

func renewalTime(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Add(-life / 3)
}

func dueForRenewal(c *x509.Certificate, now time.Time) bool {
	return !now.Before(renewalTime(c))
}

// certProblem says why the serving certificate must be replaced, or "".
func certProblem(certPEM, keyPEM []byte, ca *x509.Certificate, o Options, now time.Time) string {
	if len(certPEM) == 0 {
		return "no serving certificate stored yet"
	}
	cert, _, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return "no usable serving certificate (" + err.Error() + ")"
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return "the serving certificate is not signed by the current CA"
	}
	if dueForRenewal(cert, now) {
		return fmt.Sprintf("serving certificate expires at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if !sameStrings(cert.DNSNames, o.DNSNames) || !sameIPs(cert.IPAddresses, o.IPAddresses) {
		return "the serving certificate's names changed"
	}
	return ""
}

func newCA(lifetime time.Duration, now time.Time) (*x509.Certificate, crypto.Signer, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("generating the CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("barelb-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-backdate(lifetime)),
		NotAfter:              now.Add(lifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("reading back the CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func issue(ca *x509.Certificate, caKey crypto.Signer, o Options, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the serving key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	cn := "barelb-webhook"
	if len(o.DNSNames) > 0 {
		cn = o.DNSNames[0]
	}
	notAfter := now.Add(o.CertLifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPAddresses,
		NotBefore:    now.Add(-backdate(o.CertLifetime)),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the serving certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// backdate is how far NotBefore goes into the past: a tenth of the
// lifetime, at most an hour, so that short test lifetimes stay mostly in
// the future.
func backdate(lifetime time.Duration) time.Duration {
	return min(lifetime/10, maxBackdate)
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("drawing a serial number: %w", err)
	}
	return n, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding a private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// parsePair reads a certificate and its key and checks they belong
// together.
func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("the private key cannot sign")
	}
	return cert, signer, nil
}

// parseCerts reads every certificate of a PEM list, skipping what does not
// parse.
func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sameIPs(a, b []net.IP) bool {
	if len(a) != len(b) {
		return false
	}
	for _, ip := range b {
		if !slices.ContainsFunc(a, ip.Equal) {
			return false
		}
	}
	return true
}

func joinReasons(rs []string) string {
	out := rs[0]
	for _, r := range rs[1:] {
		out += "; " + r
	}
	return out
}
