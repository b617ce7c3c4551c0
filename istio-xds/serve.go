package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/security"
)

// identityHeader carries the proxy's SPIFFE identity on its ADS stream (the bootstrap's
// initial_metadata). istiod learns it from the proxy's client certificate or token; on loopback
// the harness that wrote the bootstrap is the only client, and gateway credentials (SDS over
// ADS) are only handed to a proxy with a verified identity.
const identityHeader = "x-meshauth-workload-identity"

type loopbackIdentity struct{}

func (loopbackIdentity) AuthenticatorType() string { return "meshauth-loopback-identity" }

func (loopbackIdentity) Authenticate(ctx security.AuthContext) (*security.Caller, error) {
	md, ok := metadata.FromIncomingContext(ctx.GrpcContext)
	if !ok {
		return nil, fmt.Errorf("no gRPC metadata")
	}
	identities := md.Get(identityHeader)
	if len(identities) == 0 {
		return nil, fmt.Errorf("no %s metadata on the stream", identityHeader)
	}
	return &security.Caller{AuthSource: security.AuthSourceIDToken, Identities: identities}, nil
}

// processFailer stands in for *testing.T: the fake discovery server reports unrecoverable
// errors through it.
type processFailer struct {
	mu       sync.Mutex
	cleanups []func()
}

func (f *processFailer) Fail()    { f.Fatal("failed") }
func (f *processFailer) FailNow() { f.Fatal("failed") }
func (f *processFailer) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"meshauth-istio-xds: fatal:"}, args...)...)
	os.Exit(1)
}
func (f *processFailer) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }
func (f *processFailer) Log(args ...any)                   { fmt.Fprintln(os.Stderr, args...) }
func (f *processFailer) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
func (f *processFailer) Helper()          {}
func (f *processFailer) Skip(args ...any) { f.Fatal(args...) }
func (f *processFailer) TempDir() string {
	dir, err := os.MkdirTemp("", "meshauth-istio-xds")
	if err != nil {
		f.Fatal(err)
	}
	return dir
}
func (f *processFailer) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *processFailer) runCleanups() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func newGenerator(failer *processFailer, in *inputs, listener net.Listener) *xds.FakeDiscoveryServer {
	opts := xds.FakeOptions{
		Configs:                    in.configs,
		KubernetesObjectString:     in.kubeObjects,
		MeshConfig:                 in.mesh,
		DisableSecretAuthorization: true,
	}
	if listener != nil {
		opts.ListenerBuilder = func() (net.Listener, error) { return listener, nil }
	}
	server := xds.NewFakeDiscoveryServer(failer, opts)
	server.Discovery.Authenticators = []security.Authenticator{loopbackIdentity{}}
	return server
}

func serveCommand(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var common commonFlags
	common.register(fs)
	xdsAddr := fs.String("xds", "127.0.0.1:15010", "address to serve ADS on (istiod's plaintext port)")
	sdsAddr := fs.String("sds", "127.0.0.1:15011", "address to serve SDS on (istio-agent's role)")
	caCert := fs.String("ca-cert", "", "mesh CA certificate (PEM)")
	caKey := fs.String("ca-key", "", "mesh CA private key (PEM, PKCS#8)")
	trustDomain := fs.String("trust-domain", "cluster.local", "SPIFFE trust domain of workload certificates")
	healthAddr := fs.String("health", "", "address to answer GET /ready on once serving (optional)")
	_ = fs.Parse(args)
	if err := common.validate(); err != nil {
		return err
	}
	if *caCert == "" || *caKey == "" {
		return &inputError{"--ca-cert and --ca-key are required"}
	}
	authority, err := loadAuthority(*caCert, *caKey, *trustDomain)
	if err != nil {
		return err
	}
	in, err := loadInputs(common.configDirs, common.meshFile)
	if err != nil {
		return err
	}
	for _, warning := range in.warnings {
		fmt.Fprintf(os.Stderr, "warning: %s\n", warning)
	}
	xdsListener, err := net.Listen("tcp", *xdsAddr)
	if err != nil {
		return fmt.Errorf("xDS listener: %v", err)
	}
	sdsListener, err := net.Listen("tcp", *sdsAddr)
	if err != nil {
		return fmt.Errorf("SDS listener: %v", err)
	}
	failer := &processFailer{}
	newGenerator(failer, in, xdsListener)

	sdsServer := grpc.NewServer()
	secretservice.RegisterSecretDiscoveryServiceServer(sdsServer, &secretServer{authority: authority})
	go func() {
		if err := sdsServer.Serve(sdsListener); err != nil {
			failer.Fatal("SDS server:", err)
		}
	}()
	if *healthAddr != "" {
		healthListener, err := net.Listen("tcp", *healthAddr)
		if err != nil {
			return fmt.Errorf("health listener: %v", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
		go func() { _ = http.Serve(healthListener, mux) }()
	}
	fmt.Printf("ready xds=%s sds=%s istio=%s objects=%d\n", xdsListener.Addr(), sdsListener.Addr(), generatorVersion(), len(in.configs))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
	sdsServer.Stop()
	failer.runCleanups()
	return nil
}
