package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// The two secrets Istio's generated config asks istio-agent for.
const (
	workloadSecret = "default"
	rootSecret     = "ROOTCA"
)

type authority struct {
	cert        *x509.Certificate
	certPEM     []byte
	key         crypto.Signer
	trustDomain string
}

func loadAuthority(certPath, keyPath, trustDomain string) (*authority, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, &inputError{fmt.Sprintf("mesh CA certificate: %v", err)}
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, &inputError{fmt.Sprintf("mesh CA certificate %s: no PEM block", certPath)}
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, &inputError{fmt.Sprintf("mesh CA certificate %s: %v", certPath, err)}
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, &inputError{fmt.Sprintf("mesh CA key: %v", err)}
	}
	keyBlock, _ := pem.Decode(keyPEM)
	if keyBlock == nil {
		return nil, &inputError{fmt.Sprintf("mesh CA key %s: no PEM block", keyPath)}
	}
	parsed, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, &inputError{fmt.Sprintf("mesh CA key %s: %v", keyPath, err)}
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, &inputError{fmt.Sprintf("mesh CA key %s: not a signing key", keyPath)}
	}
	return &authority{cert: cert, certPEM: certPEM, key: signer, trustDomain: trustDomain}, nil
}

// issue signs a workload certificate the way istiod's CA does for a CSR from istio-agent: the
// SPIFFE identity as URI SAN; the workload's loopback addresses as IP SANs so that clients
// outside the mesh (the harness's own attack callers) can verify the server by address.
func (a *authority) issue(node *core.Node) (certPEM, keyPEM []byte, err error) {
	fields := node.GetMetadata().GetFields()
	namespace := fields["NAMESPACE"].GetStringValue()
	account := fields["SERVICE_ACCOUNT"].GetStringValue()
	if namespace == "" || account == "" {
		return nil, nil, fmt.Errorf("node %s has no NAMESPACE/SERVICE_ACCOUNT metadata", node.GetId())
	}
	spiffe := &url.URL{Scheme: "spiffe", Host: a.trustDomain, Path: "/ns/" + namespace + "/sa/" + account}
	var ips []net.IP
	for _, ip := range strings.Split(fields["INSTANCE_IPS"].GetStringValue(), ",") {
		if parsed := net.ParseIP(strings.TrimSpace(ip)); parsed != nil {
			ips = append(ips, parsed)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{a.trustDomain}},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{spiffe},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, a.cert, key.Public(), a.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

type secretServer struct {
	secretservice.UnimplementedSecretDiscoveryServiceServer
	authority *authority
	nonce     atomic.Uint64
}

func (s *secretServer) StreamSecrets(stream secretservice.SecretDiscoveryService_StreamSecretsServer) error {
	var node *core.Node
	var sent []string
	for {
		request, err := stream.Recv()
		if err != nil {
			return err
		}
		if request.GetNode() != nil {
			node = request.GetNode()
		}
		if request.GetErrorDetail() != nil {
			fmt.Fprintf(os.Stderr, "SDS: %s rejected %v: %s\n", node.GetId(), request.GetResourceNames(), request.GetErrorDetail().GetMessage())
			continue
		}
		if request.GetResponseNonce() != "" && sameNames(sent, request.GetResourceNames()) {
			continue
		}
		if node == nil {
			return fmt.Errorf("SDS stream without a node")
		}
		var resources []*anypb.Any
		for _, name := range request.GetResourceNames() {
			secret, err := s.secret(node, name)
			if err != nil {
				fmt.Fprintf(os.Stderr, "SDS: %s asked for %q: %v\n", node.GetId(), name, err)
				return err
			}
			encoded, err := anypb.New(secret)
			if err != nil {
				return err
			}
			resources = append(resources, encoded)
		}
		sent = append([]string(nil), request.GetResourceNames()...)
		err = stream.Send(&discovery.DiscoveryResponse{
			VersionInfo: time.Now().UTC().Format(time.RFC3339Nano),
			Resources:   resources,
			TypeUrl:     request.GetTypeUrl(),
			Nonce:       strconv.FormatUint(s.nonce.Add(1), 10),
		})
		if err != nil {
			return err
		}
	}
}

func (s *secretServer) secret(node *core.Node, name string) (*tls.Secret, error) {
	switch name {
	case rootSecret:
		return &tls.Secret{Name: name, Type: &tls.Secret_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
			TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: s.authority.certPEM}},
		}}}, nil
	case workloadSecret:
		certPEM, keyPEM, err := s.authority.issue(node)
		if err != nil {
			return nil, err
		}
		return &tls.Secret{Name: name, Type: &tls.Secret_TlsCertificate{TlsCertificate: &tls.TlsCertificate{
			CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: append(certPEM, s.authority.certPEM...)}},
			PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: keyPEM}},
		}}}, nil
	default:
		return nil, fmt.Errorf("unknown secret (this server issues %q and %q)", workloadSecret, rootSecret)
	}
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
