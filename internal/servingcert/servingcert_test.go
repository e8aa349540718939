package servingcert

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

var opts = Options{
	DNSNames:     []string{"barelb-webhook-service.barelb-system.svc", "barelb-webhook-service.barelb-system.svc.cluster.local"},
	CertLifetime: 90 * time.Hour,
	CALifetime:   900 * time.Hour,
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// verify checks that the serving certificate chains, at now, to the CA
// bundle for every DNS name, and returns it.
func verify(t *testing.T, b *Bundle, o Options, now time.Time) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CABundle()) {
		t.Fatal("the CA bundle holds no certificate")
	}
	certs := parseCerts(b.Cert)
	if len(certs) != 1 {
		t.Fatalf("%d serving certificates, want 1", len(certs))
	}
	for _, name := range o.DNSNames {
		if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now}); err != nil {
			t.Errorf("the serving certificate does not verify for %s at %s: %v", name, now, err)
		}
	}
	for _, ip := range o.IPAddresses {
		if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: ip.String(), Roots: pool, CurrentTime: now}); err != nil {
			t.Errorf("the serving certificate does not verify for %s: %v", ip, err)
		}
	}
	if _, err := b.TLSCertificate(); err != nil {
		t.Error(err)
	}
	return certs[0]
}

func renew(t *testing.T, b *Bundle, o Options, now time.Time, wantChanged bool, wantReason string) *Bundle {
	t.Helper()
	next, changed, reason, err := Renew(b, o, now)
	if err != nil {
		t.Fatal(err)
	}
	if changed != wantChanged || !strings.Contains(reason, wantReason) {
		t.Fatalf("Renew at %s: changed %v (%q), want %v (%q)", now, changed, reason, wantChanged, wantReason)
	}
	if !changed && next != b {
		t.Error("Renew returned a new bundle without a change")
	}
	verify(t, next, o, now)
	return next
}

func TestRenewLifecycle(t *testing.T) {
	b := renew(t, nil, opts, t0, true, "no usable CA")
	ca := parseCerts(b.CACert)[0]
	cert := verify(t, b, opts, t0)
	if got := cert.NotAfter.Sub(t0); got != opts.CertLifetime {
		t.Errorf("serving certificate lives %s from now, want %s", got, opts.CertLifetime)
	}
	if !cert.NotBefore.Before(t0) {
		t.Error("serving certificate is not backdated against clock skew")
	}
	if !strings.HasPrefix(string(b.Key), "-----BEGIN EC PRIVATE KEY") {
		t.Error("the key is not PEM")
	}

	// Nothing to do until the last third of the serving certificate's life.
	renew(t, b, opts, t0.Add(59*time.Hour), false, "")
	if next := NextRenewal(b); next.Before(t0.Add(59*time.Hour)) || next.After(t0.Add(61*time.Hour)) {
		t.Errorf("NextRenewal = %s, want about 60h after %s", next, t0)
	}
	b = renew(t, b, opts, t0.Add(61*time.Hour), true, "serving certificate expires")
	if got := parseCerts(b.CACert)[0]; !got.Equal(ca) {
		t.Error("renewing the serving certificate replaced the CA")
	}
	if len(b.PreviousCAs) != 0 {
		t.Error("a previous CA without a CA change")
	}

	// The CA's last third: a new CA, the old one still trusted.
	caDue := t0.Add(601 * time.Hour)
	b = renew(t, b, opts, caDue, true, "CA expires")
	if got := parseCerts(b.CACert)[0]; got.Equal(ca) {
		t.Fatal("the CA was not replaced")
	}
	if prev := parseCerts(b.PreviousCAs); len(prev) != 1 || !prev[0].Equal(ca) {
		t.Fatalf("previous CAs %d, want the old CA", len(prev))
	}
	if n := len(parseCerts(b.CABundle())); n != 2 {
		t.Errorf("CA bundle holds %d certificates, want 2", n)
	}
	if err := verify(t, b, opts, caDue).CheckSignatureFrom(parseCerts(b.CACert)[0]); err != nil {
		t.Errorf("the new serving certificate is not signed by the new CA: %v", err)
	}
	renew(t, b, opts, caDue.Add(time.Minute), false, "")

	// Once the old CA has expired it leaves the bundle.
	b = renew(t, b, opts, t0.Add(901*time.Hour), true, "dropped expired")
	if len(b.PreviousCAs) != 0 {
		t.Error("an expired CA is still trusted")
	}
}

func TestRenewReplaces(t *testing.T) {
	good, _, _, err := Renew(nil, opts, t0)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _, err := Renew(nil, opts, t0)
	if err != nil {
		t.Fatal(err)
	}
	withIP := opts
	withIP.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	for _, tc := range []struct {
		name   string
		stored *Bundle
		o      Options
		reason string
		sameCA bool
	}{
		{"garbage", &Bundle{CACert: []byte("x"), CAKey: []byte("y"), Cert: []byte("z"), Key: []byte("w")}, opts, "no usable CA", false},
		{"a CA without its key", &Bundle{CACert: good.CACert, CAKey: other.CAKey, Cert: good.Cert, Key: good.Key}, opts, "no usable CA", false},
		{"a serving certificate of another CA", &Bundle{CACert: good.CACert, CAKey: good.CAKey, Cert: other.Cert, Key: other.Key}, opts, "not signed by the current CA", true},
		{"a serving certificate without its key", &Bundle{CACert: good.CACert, CAKey: good.CAKey, Cert: good.Cert, Key: other.Key}, opts, "no usable serving certificate", true},
		{"a new IP address", good, withIP, "names changed", true},
		{"a serving certificate used as CA", &Bundle{CACert: good.Cert, CAKey: good.Key}, opts, "not a CA", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := renew(t, tc.stored, tc.o, t0, true, tc.reason)
			if same := string(next.CACert) == string(tc.stored.CACert); same != tc.sameCA {
				t.Errorf("kept the CA: %v, want %v", same, tc.sameCA)
			}
		})
	}
}

func TestCertDoesNotOutliveCA(t *testing.T) {
	o := opts
	o.CALifetime, o.CertLifetime = 10*time.Hour, 100*time.Hour
	b := renew(t, nil, o, t0, true, "")
	if cert, ca := parseCerts(b.Cert)[0], parseCerts(b.CACert)[0]; cert.NotAfter.After(ca.NotAfter) {
		t.Errorf("serving certificate ends %s, after its CA (%s)", cert.NotAfter, ca.NotAfter)
	}
}
