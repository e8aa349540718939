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
	return l.HTTPClientResolving(host, timeout, "")
}

// HTTPClientResolving is HTTPClient with every connection made to ip, the
// URL's port kept, when ip is not empty: the URL's host name then only
// goes into the Host header, as with `curl --resolve NAME:PORT:IP`. An
// ingress controller routes by it.
func (l *Lab) HTTPClientResolving(host string, timeout time.Duration, ip string) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if ip != "" {
				_, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, fmt.Errorf("dialing %s: %w", addr, err)
				}
				addr = net.JoinHostPort(ip, port)
			}
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
