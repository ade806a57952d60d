package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultEtcdPrefix is where ctnet's keys live in a shared etcd.
const DefaultEtcdPrefix = "/ctnet/"

// DefaultEtcdPort is etcd's client port, used when an endpoint names none.
const DefaultEtcdPort = "2379"

// Config says how to reach a cluster. The TLS and user fields are named
// as etcdctl names its flags (--cacert, --cert, --key, --user, --password).
type Config struct {
	Endpoints []string // host:port
	Prefix    string   // key prefix, "/" at both ends; DefaultEtcdPrefix if empty
	// TLS is set by etcds:// and implied by any of the files; without
	// CACert the system's roots verify the members' certificates.
	TLS               bool
	CACert, Cert, Key string // PEM files
	Username          string
	Password          string
	// Timeout bounds every call: a whole Update with its retries, a View, a
	// session's creation. Default 10s.
	Timeout time.Duration
	// MaxAttempts bounds how often Update runs its function when other
	// writers keep conflicting. Default 50.
	MaxAttempts int
	// DialContext, when set, opens the connections to the members (tests
	// reach a cluster inside a sandbox namespace with it).
	DialContext func(ctx context.Context, addr string) (net.Conn, error)
}

const etcdURLForm = "etcd://HOST[:PORT][,HOST[:PORT]...][/PREFIX/] (etcds:// for TLS)"

// ParseURL reads the --store form etcd://h1:2379,h2:2379,h3/prefix/;
// etcds:// turns on TLS. A missing port is 2379, a missing prefix
// DefaultEtcdPrefix.
func ParseURL(raw string) (Config, error) {
	bad := func(why string) (Config, error) {
		return Config{}, fmt.Errorf("store %q: %s; want %s", raw, why, etcdURLForm)
	}
	var cfg Config
	scheme, rest, ok := strings.Cut(raw, "://")
	switch strings.ToLower(scheme) {
	case "etcd":
	case "etcds":
		cfg.TLS = true
	default:
		if !ok {
			return bad("no scheme")
		}
		return bad("unknown scheme " + strconv.Quote(scheme))
	}
	if strings.ContainsAny(rest, "?#") {
		return bad("query and fragment are not understood")
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if strings.Contains(hosts, "@") {
		return bad("a user in the URL would show in ps; use --user and --password")
	}
	if hosts == "" {
		return bad("no endpoint")
	}
	seen := map[string]bool{}
	for _, h := range strings.Split(hosts, ",") {
		ep, err := parseEndpoint(h)
		if err != nil {
			return bad(err.Error())
		}
		if seen[ep] {
			return bad("endpoint " + ep + " named twice")
		}
		seen[ep] = true
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	if path != "" {
		p := "/" + strings.TrimSuffix(path, "/") + "/"
		if err := checkPrefix(p); err != nil {
			return bad(err.Error())
		}
		cfg.Prefix = p
	}
	return cfg, nil
}

func parseEndpoint(h string) (string, error) {
	if h == "" {
		return "", fmt.Errorf("empty endpoint")
	}
	host, port := h, DefaultEtcdPort
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
		var err error
		if host, port, err = net.SplitHostPort(h); err != nil {
			if !strings.HasSuffix(h, "]") {
				return "", fmt.Errorf("endpoint %q: %v", h, err)
			}
			host, port = strings.Trim(h, "[]"), DefaultEtcdPort
		}
	} else if strings.Contains(h, ":") {
		return "", fmt.Errorf("endpoint %q: an IPv6 address goes in brackets, [addr]:port", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
		return "", fmt.Errorf("endpoint %q: port %q is not 1-65535", h, port)
	}
	ip := net.ParseIP(host)
	if strings.HasPrefix(h, "[") && (ip == nil || ip.To4() != nil) {
		return "", fmt.Errorf("endpoint %q: brackets hold an IPv6 address", h)
	}
	if ip == nil && !validHostname(host) {
		return "", fmt.Errorf("endpoint %q: %q is neither an address nor a host name", h, host)
	}
	return net.JoinHostPort(host, port), nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 || strings.HasPrefix(h, ".") || strings.HasSuffix(h, "..") {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func checkPrefix(p string) error {
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		return fmt.Errorf("prefix %q must start and end with /", p)
	}
	if strings.Contains(p, "//") {
		return fmt.Errorf("prefix %q has an empty path segment", p)
	}
	for _, c := range p {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("prefix %q has a space or control character", p)
		}
	}
	return nil
}

// tlsConfig loads the files named by cfg; nil when TLS is off.
func (cfg Config) tlsConfig() (*tls.Config, error) {
	if !cfg.TLS && cfg.CACert == "" && cfg.Cert == "" && cfg.Key == "" {
		return nil, nil
	}
	if (cfg.Cert == "") != (cfg.Key == "") {
		return nil, fmt.Errorf("etcd TLS: --cert and --key go together")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: --cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd TLS: --cacert %s: no PEM certificate in it", cfg.CACert)
		}
	}
	if cfg.Cert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: --cert %s / --key %s: %w", cfg.Cert, cfg.Key, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
