// meshauth-istio-xds runs Istio's own config generator (istiod's pilot, in process, without
// Kubernetes) over a directory of Istio YAML and serves the result to Envoy proxies on
// loopback: ADS (listeners, clusters, routes, endpoints, gateway secrets) like istiod, and SDS
// (workload certificates issued by the run's mesh CA) like istio-agent.
//
//	meshauth-istio-xds serve  --config DIR --mesh FILE --ca-cert F --ca-key F --xds ADDR --sds ADDR
//	meshauth-istio-xds dump   --config DIR --mesh FILE --proxies FILE --out DIR
//	meshauth-istio-xds check  --config DIR --mesh FILE
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
)

// Istio-only Envoy extensions that upstream Envoy lacks are turned off; remote JWKS is fetched
// by Envoy through the mesh (the RequestAuthentication is applied before the IdP is up, and
// istiod's own fetch would keep a failed key set: istio/istio#37456).
var requiredEnv = map[string]string{
	"PILOT_ENABLE_ALPN_FILTER":       "false",
	"PILOT_ENABLE_METADATA_EXCHANGE": "false",
	"PILOT_JWT_ENABLE_REMOTE_JWKS":   "envoy",
	// Streams are plaintext on loopback; they are still authenticated (the identity the
	// bootstrap sends), so gateway credentials go only to the gateway.
	"XDS_AUTH_PLAINTEXT": "true",
}

func main() {
	reexecWithRequiredEnv()
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serveCommand(os.Args[2:])
	case "dump":
		err = dumpCommand(os.Args[2:])
	case "check":
		err = checkCommand(os.Args[2:])
	case "version":
		fmt.Println(generatorVersion())
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "meshauth-istio-xds: unknown command %q\n", os.Args[1])
		usage()
	}
	if err != nil {
		var inputErr *inputError
		if errors.As(err, &inputErr) {
			fmt.Fprintf(os.Stderr, "meshauth-istio-xds: %v\n", err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "meshauth-istio-xds: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  meshauth-istio-xds serve --config DIR --mesh FILE --ca-cert FILE --ca-key FILE --xds ADDR --sds ADDR [--trust-domain D]
  meshauth-istio-xds dump  --config DIR --mesh FILE --proxies FILE --out DIR
  meshauth-istio-xds check --config DIR --mesh FILE
  meshauth-istio-xds version
`)
	os.Exit(2)
}

// reexecWithRequiredEnv restarts the program with the feature flags set: pilot reads them into
// package variables while packages initialise, before main runs.
func reexecWithRequiredEnv() {
	var missing []string
	for key, value := range requiredEnv {
		if os.Getenv(key) != value {
			missing = append(missing, key+"="+value)
		}
	}
	if len(missing) == 0 {
		return
	}
	sort.Strings(missing)
	env := os.Environ()
	for _, kv := range missing {
		key := strings.SplitN(kv, "=", 2)[0]
		filtered := env[:0]
		for _, existing := range env {
			if !strings.HasPrefix(existing, key+"=") {
				filtered = append(filtered, existing)
			}
		}
		env = append(filtered, kv)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "meshauth-istio-xds: cannot find own executable to set %v: %v\n", missing, err)
		os.Exit(1)
	}
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		fmt.Fprintf(os.Stderr, "meshauth-istio-xds: re-exec with %v: %v\n", missing, err)
		os.Exit(1)
	}
}

type commonFlags struct {
	configDirs dirList
	meshFile   string
}

type dirList []string

func (d *dirList) String() string       { return strings.Join(*d, ",") }
func (d *dirList) Set(dir string) error { *d = append(*d, dir); return nil }

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.Var(&c.configDirs, "config", "directory of Istio YAML (*.yaml, *.yml), read recursively; "+
		"repeatable: an object in a later directory replaces the one of the same kind, namespace and name")
	fs.StringVar(&c.meshFile, "mesh", "", "MeshConfig YAML (the mesh section of istio's ConfigMap)")
}

func (c *commonFlags) validate() error {
	if len(c.configDirs) == 0 {
		return &inputError{"--config DIR is required"}
	}
	if c.meshFile == "" {
		return &inputError{"--mesh FILE is required"}
	}
	return nil
}

type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func checkCommand(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	var common commonFlags
	common.register(fs)
	_ = fs.Parse(args)
	if err := common.validate(); err != nil {
		return err
	}
	in, err := loadInputs(common.configDirs, common.meshFile)
	if err != nil {
		return err
	}
	fmt.Printf("%d Istio objects, %d Kubernetes objects: valid\n", len(in.configs), in.kubeObjectCount)
	return nil
}
