package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	kubeyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigyaml "sigs.k8s.io/yaml"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/resource"
)

// The Istio kinds a deployment of this shape uses. Anything else is refused by name rather than
// dropped: a policy the generator never saw would make every verdict about it meaningless.
var supportedKinds = map[string]bool{
	"networking.istio.io/Gateway":             true,
	"networking.istio.io/VirtualService":      true,
	"networking.istio.io/DestinationRule":     true,
	"networking.istio.io/ServiceEntry":        true,
	"networking.istio.io/WorkloadEntry":       true,
	"networking.istio.io/Sidecar":             true,
	"networking.istio.io/EnvoyFilter":         true,
	"security.istio.io/AuthorizationPolicy":   true,
	"security.istio.io/RequestAuthentication": true,
	"security.istio.io/PeerAuthentication":    true,
}

type inputs struct {
	configs         []config.Config
	kubeObjects     string
	kubeObjectCount int
	mesh            *meshconfig.MeshConfig
	warnings        []string
}

type document struct {
	file  string
	index int
	raw   map[string]any
}

func (d document) where() string {
	kind, _ := d.raw["kind"].(string)
	meta, _ := d.raw["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	namespace, _ := meta["namespace"].(string)
	return fmt.Sprintf("%s, document %d (%s %s/%s)", d.file, d.index, kind, namespace, name)
}

func loadInputs(configDirs []string, meshFile string) (*inputs, error) {
	meshConfig, err := loadMeshConfig(meshFile)
	if err != nil {
		return nil, err
	}
	var docs []document
	for _, dir := range configDirs {
		more, err := readDocuments(dir)
		if err != nil {
			return nil, err
		}
		docs = overlay(docs, more)
	}
	in := &inputs{mesh: meshConfig}
	var kube []string
	for _, doc := range docs {
		apiVersion, _ := doc.raw["apiVersion"].(string)
		kind, _ := doc.raw["kind"].(string)
		if apiVersion == "" || kind == "" {
			return nil, &inputError{fmt.Sprintf("%s: apiVersion and kind are required", doc.where())}
		}
		meta, _ := doc.raw["metadata"].(map[string]any)
		if meta == nil || meta["name"] == nil {
			return nil, &inputError{fmt.Sprintf("%s: metadata.name is required", doc.where())}
		}
		if meta["namespace"] == nil {
			// kubectl's default for objects without a namespace.
			meta["namespace"] = "default"
		}
		group := strings.SplitN(apiVersion, "/", 2)[0]
		if apiVersion == "authentication.istio.io/v1alpha1" && (kind == "Policy" || kind == "MeshPolicy") {
			translated, err := translateLegacy(doc)
			if err != nil {
				return nil, err
			}
			for _, modern := range translated {
				cfg, warning, err := convert(modern)
				if err != nil {
					return nil, err
				}
				if warning != "" {
					in.warnings = append(in.warnings, warning)
				}
				in.configs = append(in.configs, *cfg)
			}
			continue
		}
		if apiVersion == "v1" && kind == "Secret" {
			mergeStringData(doc.raw)
			encoded, err := sigyaml.Marshal(doc.raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", doc.where(), err)
			}
			kube = append(kube, string(encoded))
			continue
		}
		if !strings.HasSuffix(group, "istio.io") {
			return nil, &inputError{fmt.Sprintf("%s: %s/%s is not an Istio object; only Istio networking and security objects and "+
				"v1 Secrets (gateway credentials) are read here, move it out of the directory", doc.where(), apiVersion, kind)}
		}
		if !supportedKinds[group+"/"+kind] {
			return nil, &inputError{fmt.Sprintf("%s: %s is not supported; supported kinds: %s", doc.where(), kind, supportedKindList())}
		}
		cfg, warning, err := convert(doc)
		if err != nil {
			return nil, err
		}
		if warning != "" {
			in.warnings = append(in.warnings, warning)
		}
		in.configs = append(in.configs, *cfg)
	}
	in.kubeObjects = strings.Join(kube, "\n---\n")
	in.kubeObjectCount = len(kube)
	return in, nil
}

func supportedKindList() string {
	var kinds []string
	for k := range supportedKinds {
		kinds = append(kinds, strings.SplitN(k, "/", 2)[1])
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ", ")
}

func convert(doc document) (*config.Config, string, error) {
	encoded, err := json.Marshal(doc.raw)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", doc.where(), err)
	}
	obj := crd.IstioKind{}
	if err := json.Unmarshal(encoded, &obj); err != nil {
		return nil, "", &inputError{fmt.Sprintf("%s: %v", doc.where(), err)}
	}
	gvk := obj.GroupVersionKind()
	schema, ok := collections.PilotGatewayAPI().FindByGroupVersionAliasesKind(resource.FromKubernetesGVK(&gvk))
	if !ok {
		return nil, "", &inputError{fmt.Sprintf("%s: unknown version %s of %s", doc.where(), obj.APIVersion, obj.Kind)}
	}
	if err := strictSpec(schema, obj.Spec); err != nil {
		return nil, "", &inputError{fmt.Sprintf("%s: spec: %v", doc.where(), err)}
	}
	cfg, err := crd.ConvertObject(schema, &obj, "cluster.local")
	if err != nil {
		return nil, "", &inputError{fmt.Sprintf("%s: %v", doc.where(), err)}
	}
	warnings, err := schema.ValidateConfig(*cfg)
	if err != nil {
		return nil, "", &inputError{fmt.Sprintf("%s: rejected by Istio's validation: %v", doc.where(), err)}
	}
	if warnings != nil {
		return cfg, fmt.Sprintf("%s: %v", doc.where(), warnings), nil
	}
	return cfg, "", nil
}

// strictSpec decodes the spec refusing unknown fields: Istio's own decoder retries with unknown
// fields allowed, so a misspelt `notPath` would silently turn into "no condition".
func strictSpec(schema resource.Schema, spec json.RawMessage) error {
	instance, err := schema.NewInstance()
	if err != nil {
		return err
	}
	message, ok := instance.(proto.Message)
	if !ok {
		return nil
	}
	if len(spec) == 0 {
		return nil
	}
	return protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(spec, message)
}

func loadMeshConfig(path string) (*meshconfig.MeshConfig, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, &inputError{fmt.Sprintf("mesh config %s: %v", path, err)}
	}
	encoded, err := sigyaml.YAMLToJSON(text)
	if err != nil {
		return nil, &inputError{fmt.Sprintf("mesh config %s: not YAML: %v", path, err)}
	}
	if err := protojson.Unmarshal(encoded, &meshconfig.MeshConfig{}); err != nil {
		return nil, &inputError{fmt.Sprintf("mesh config %s: %v", path, err)}
	}
	m, err := mesh.ApplyMeshConfigDefaults(string(text))
	if err != nil {
		return nil, &inputError{fmt.Sprintf("mesh config %s: %v", path, err)}
	}
	return m, nil
}

func readDocuments(dir string) ([]document, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, &inputError{fmt.Sprintf("Istio config directory: %v", err)}
	}
	if !info.IsDir() {
		return nil, &inputError{fmt.Sprintf("Istio config %s is not a directory", dir)}
	}
	var files []string
	err = filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !entry.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var docs []document
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		decoder := kubeyaml.NewYAMLOrJSONDecoder(bytes.NewReader(text), 64*1024)
		for index := 1; ; index++ {
			raw := map[string]any{}
			err := decoder.Decode(&raw)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, &inputError{fmt.Sprintf("%s, document %d: not valid YAML: %v", file, index, err)}
			}
			if len(raw) == 0 {
				continue
			}
			docs = append(docs, document{file: file, index: index, raw: raw})
		}
	}
	return docs, nil
}

// overlay adds later documents, each replacing an earlier one of the same kind, namespace and
// name (a user's policy directory over the reference's).
func overlay(base, later []document) []document {
	key := func(d document) string {
		apiVersion, _ := d.raw["apiVersion"].(string)
		kind, _ := d.raw["kind"].(string)
		meta, _ := d.raw["metadata"].(map[string]any)
		namespace, _ := meta["namespace"].(string)
		if namespace == "" {
			namespace = "default"
		}
		name, _ := meta["name"].(string)
		return strings.SplitN(apiVersion, "/", 2)[0] + "/" + kind + "/" + namespace + "/" + name
	}
	index := map[string]int{}
	for i, d := range base {
		index[key(d)] = i
	}
	for _, d := range later {
		if i, ok := index[key(d)]; ok {
			fmt.Fprintf(os.Stderr, "overlay: %s replaces %s\n", d.where(), base[i].where())
			base[i] = d
			continue
		}
		index[key(d)] = len(base)
		base = append(base, d)
	}
	return base
}

// mergeStringData does what the API server does on write: stringData's values go into data,
// base64-encoded (the fake client stores objects as given).
func mergeStringData(secret map[string]any) {
	stringData, ok := secret["stringData"].(map[string]any)
	if !ok {
		return
	}
	data, _ := secret["data"].(map[string]any)
	if data == nil {
		data = map[string]any{}
	}
	for key, value := range stringData {
		text, _ := value.(string)
		data[key] = base64.StdEncoding.EncodeToString([]byte(text))
	}
	secret["data"] = data
	delete(secret, "stringData")
}
