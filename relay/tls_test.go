//go:build !js && !wasip1

package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "webkv test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	cf, kf, pool := selfSigned(t, t.TempDir())
	_, u := startServer(t, Config{TLSCert: cf, TLSKey: kf, Tokens: map[string]string{"j": "tok"}})
	if !strings.HasPrefix(u, "wss://") {
		t.Fatalf("url %q, want wss://", u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, u, DialOptions{Job: "j", Token: "tok", TLSConfig: &tls.Config{RootCAs: pool}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.sendMsg(ctx, hello("j", "tok")); err != nil {
		t.Fatal(err)
	}
	b, err := c.recvMsg(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var m wire.Msg
	if err := wire.Decode(b, nil, &m); err != nil || m.Type != wire.TypeWelcome {
		t.Fatalf("over TLS: %v %v", m.Type, err)
	}
	// A big message through the coalescing writer under TLS.
	big := make([]byte, 3<<20)
	copy(big, wire.AppendHeader(nil, &wire.Header{Type: wire.TypePing, PLen: uint32(len(big) - wire.HeaderSize)}))
	if err := c.sendMsg(ctx, big); err != nil {
		t.Fatal(err)
	}
	// An untrusted certificate is refused (a final error, no retry loop).
	if _, err := Dial(ctx, u, DialOptions{Job: "j", Token: "tok", Logger: quietLogger(), GiveUp: time.Second}); err == nil {
		t.Fatal("dial with an untrusted certificate succeeded")
	}
}
