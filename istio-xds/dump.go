package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"istio.io/istio/pilot/pkg/model"
)

// proxySpec describes one proxy as its Envoy bootstrap does: the node id and metadata.
type proxySpec struct {
	Name     string         `json:"name"`
	ID       string         `json:"id"`
	Metadata map[string]any `json:"metadata"`
}

func dumpCommand(args []string) error {
	fs := flag.NewFlagSet("dump", flag.ExitOnError)
	var common commonFlags
	common.register(fs)
	proxiesFile := fs.String("proxies", "", "JSON list of {name, id, metadata}, as in the proxies' bootstraps")
	outDir := fs.String("out", "", "directory to write <name>.json into")
	_ = fs.Parse(args)
	if err := common.validate(); err != nil {
		return err
	}
	if *proxiesFile == "" || *outDir == "" {
		return &inputError{"--proxies FILE and --out DIR are required"}
	}
	text, err := os.ReadFile(*proxiesFile)
	if err != nil {
		return &inputError{fmt.Sprintf("proxies: %v", err)}
	}
	var proxies []proxySpec
	if err := json.Unmarshal(text, &proxies); err != nil {
		return &inputError{fmt.Sprintf("proxies %s: %v", *proxiesFile, err)}
	}
	in, err := loadInputs(common.configDirs, common.meshFile)
	if err != nil {
		return err
	}
	for _, warning := range in.warnings {
		fmt.Fprintf(os.Stderr, "warning: %s\n", warning)
	}
	failer := &processFailer{}
	defer failer.runCleanups()
	server := newGenerator(failer, in, nil)
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	for _, spec := range proxies {
		metadata, err := structpb.NewStruct(spec.Metadata)
		if err != nil {
			return &inputError{fmt.Sprintf("proxy %s: metadata: %v", spec.Name, err)}
		}
		meta, err := model.ParseMetadata(metadata)
		if err != nil {
			return &inputError{fmt.Sprintf("proxy %s: metadata: %v", spec.Name, err)}
		}
		proxy, err := model.ParseServiceNodeWithMetadata(spec.ID, meta)
		if err != nil {
			return &inputError{fmt.Sprintf("proxy %s: %v", spec.Name, err)}
		}
		proxy.ConfigNamespace = model.GetProxyConfigNamespace(proxy)
		proxy.SetWorkloadLabels(server.Env())
		proxy = server.SetupProxy(proxy)
		listeners := server.Listeners(proxy)
		dump := map[string][]json.RawMessage{
			"listeners": marshalAll(listeners),
			"clusters":  marshalAll(server.Clusters(proxy)),
			"routes":    marshalAll(server.RoutesFromListeners(proxy, listeners)),
		}
		encoded, err := json.MarshalIndent(dump, "", "  ")
		if err != nil {
			return err
		}
		path := filepath.Join(*outDir, spec.Name+".json")
		if err := os.WriteFile(path, append(encoded, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s: %d listeners, %d clusters, %d routes -> %s\n", spec.Name, len(dump["listeners"]), len(dump["clusters"]), len(dump["routes"]), path)
	}
	return nil
}

// marshalAll renders resources as stable JSON: protojson's output is deliberately unstable in
// whitespace, so each is re-encoded (sorted keys) for golden files.
func marshalAll[T proto.Message](resources []T) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(resources))
	for _, resource := range resources {
		encoded, err := protojson.Marshal(resource)
		if err != nil {
			encoded = []byte(fmt.Sprintf("%q", err.Error()))
		}
		var generic any
		if err := json.Unmarshal(encoded, &generic); err == nil {
			encoded, _ = json.Marshal(generic)
		}
		out = append(out, encoded)
	}
	sort.SliceStable(out, func(i, j int) bool { return string(out[i]) < string(out[j]) })
	return out
}

func generatorVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "istio.io/istio" {
			return dep.Version
		}
	}
	return "unknown"
}
