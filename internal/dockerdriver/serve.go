package dockerdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ctnet/ctnet/internal/network"
)

// Serve answers dockerd on the UNIX socket at path until ctx ends; then it
// finishes the requests under way and removes the socket. A socket left by a
// plugin that died is replaced; one that answers is another plugin's, and an
// error.
func Serve(ctx context.Context, path string, h http.Handler) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("plugin socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("plugin socket %s: another plugin answers on it; stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("plugin socket %s: remove the one left behind: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("plugin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return fmt.Errorf("plugin socket %s: %w", path, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		os.Remove(path)
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	os.Remove(path)
	return err
}

// DockerNames asks the dockerd at host (unix:///run/docker.sock, or a bare
// socket path) for the names of its networks.
func DockerNames(host string) func(ctx context.Context, id string) (string, error) {
	sock := strings.TrimPrefix(host, "unix://")
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	return func(ctx context.Context, id string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/networks/"+id, nil)
		if err != nil {
			return "", err
		}
		res, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		if res.StatusCode == http.StatusNotFound {
			return "", errNotYet
		}
		if res.StatusCode != http.StatusOK {
			return "", fmt.Errorf("dockerd at %s: %s", host, res.Status)
		}
		var n struct{ Name, Id string }
		if err := json.NewDecoder(res.Body).Decode(&n); err != nil {
			return "", fmt.Errorf("dockerd at %s: %w", host, err)
		}
		if n.Id != id || n.Name == "" {
			return "", fmt.Errorf("dockerd at %s has network %q as %q", host, id, n.Id)
		}
		return n.Name, nil
	}
}

var errNotYet = errors.New("dockerd does not know the network yet")

// rename asks Docker for the network's name for up to about 10 s (dockerd
// stores a network after its driver made it) and gives it to ctnet's.
func (p *Plugin) rename(id string) error {
	var name string
	var err error
	for i := 0; i < 40; i++ {
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		name, err = p.names(ctx, id)
		cancel()
		if err == nil || p.ctx.Err() != nil {
			break
		}
		select {
		case <-p.ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return err
	}
	if err := p.svc.RenameNetwork(p.ctx, id, name); err != nil {
		if network.IsNotFound(err) {
			return nil // removed meanwhile
		}
		return err
	}
	p.logf("network %s is %q, as in Docker", network.ShortID(id), name)
	return nil
}
