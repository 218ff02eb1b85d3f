//go:build !js && !wasip1

package relay

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
)

// checkOrigin decides a request's Origin header (browsers send one; native
// clients usually do not, and are always allowed). Allowed: the relay's
// own host, and every Config.Origins pattern (path.Match syntax, matched
// without case): a pattern with a port ("localhost:8000") matches that
// port only, a pattern without one ("localhost", "*.example.com") any port
// of those hosts. The error says which origin and how to allow it.
func (s *Server) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("request Origin %s is not a URL with a host", quote(origin))
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	host := u.Hostname()
	for _, p := range s.cfg.Origins {
		p = strings.ToLower(p)
		subject := strings.ToLower(u.Host)
		if !hasPort(p) {
			subject = strings.ToLower(host)
			p = strings.TrimSuffix(strings.TrimPrefix(p, "["), "]")
		}
		if ok, err := filepath.Match(p, subject); err == nil && ok {
			return nil
		}
	}
	how := fmt.Sprintf("start the relay with -origins %s", u.Host)
	if u.Port() != "" {
		how += fmt.Sprintf(", or -origins %s for any port", hostPattern(host))
	}
	return fmt.Errorf("request Origin %s is not allowed (%s)", quote(origin), how)
}

// hasPort reports whether an origin pattern names a port.
func hasPort(p string) bool {
	_, port, err := net.SplitHostPort(p)
	return err == nil && port != ""
}

// hostPattern writes host as a pattern (brackets around IPv6).
func hostPattern(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}
