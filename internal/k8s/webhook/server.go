package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Path is where the API server sends admission reviews (the
// configuration's clientConfig.service.path).
const Path = "/validate"

// Server serves the webhook over HTTPS with the keeper's certificate.
type Server struct {
	// BindAddress is host:port; port 0 picks a free port (tests).
	BindAddress string
	Handler     admission.Handler
	Certs       *CertKeeper
	Log         logr.Logger

	addr atomic.Pointer[net.TCPAddr]
}

// NeedLeaderElection is false: every replica serves.
func (s *Server) NeedLeaderElection() bool { return false }

// Addr is the address the server listens on once it started; nil before.
func (s *Server) Addr() *net.TCPAddr { return s.addr.Load() }

// Ready fails until the server listens and has a certificate.
func (s *Server) Ready() error {
	if s.Addr() == nil {
		return errors.New("the webhook server is not listening yet")
	}
	return s.Certs.Ready()
}

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	hook := &admission.Webhook{Handler: s.Handler}
	hook.LogConstructor = func(_ logr.Logger, req *admission.Request) logr.Logger {
		return admission.DefaultLogConstructor(s.Log, req)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, hook)
	ln, err := net.Listen("tcp", s.BindAddress)
	if err != nil {
		return fmt.Errorf("webhook server: listening on %s: %w", s.BindAddress, err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// The API server gives a webhook seconds (timeoutSeconds); a
		// client holding a connection longer is not the API server.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  2 * time.Minute,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.Certs.GetCertificate,
		},
	}
	s.addr.Store(ln.Addr().(*net.TCPAddr))
	s.Log.Info("Serving the admission webhook", "address", ln.Addr().String(), "path", Path)
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-done:
		return fmt.Errorf("webhook server: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("webhook server: shutting down: %w", err)
	}
	return nil
}
