package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// HTTPClient is an HTTP client whose connections start in a host's
// namespace (e.g. "client"), one new connection per request, so that every
// request resolves the address afresh through the LAN.
func (l *Lab) HTTPClient(host string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.DialContext(ctx, host, network, addr)
		},
	}}
}

// Get requests url once from host and returns the trimmed body; a status
// other than 200 is an error.
func (l *Lab) Get(host, url string, timeout time.Duration) (string, error) {
	hc := l.HTTPClient(host, timeout)
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// URL is the http:// URL of an IPv4 or IPv6 address.
func URL(ip string) string {
	if strings.Contains(ip, ":") {
		return "http://[" + ip + "]/"
	}
	return "http://" + ip + "/"
}
