package main

import (
	"fmt"
	"os"
	"strings"

	sigyaml "sigs.k8s.io/yaml"
)

// translateLegacy turns Istio's removed authentication.istio.io/v1alpha1 Policy and MeshPolicy
// (seed 003's form) into what replaced them in Istio 1.5/1.6, and says so:
//
//	peers: [{mtls: {}}]      -> PeerAuthentication mtls.mode STRICT (PERMISSIVE when asked)
//	origins: [{jwt: ...}]    -> RequestAuthentication jwtRules, and, unless originIsOptional,
//	                            AuthorizationPolicy ALLOW requestPrincipals ["*"]: v1alpha1
//	                            rejected a request without a valid token, RequestAuthentication
//	                            alone does not
//	principalBinding         -> USE_ORIGIN is the modern default (request.auth.principal);
//	                            USE_PEER has no equivalent and is refused
//	targets: [{name: svc}]   -> a workload selector app: svc (the service's pods' label)
//
// A MeshPolicy applies mesh-wide: its objects go to the root namespace, istio-system.
func translateLegacy(doc document) ([]document, error) {
	kind, _ := doc.raw["kind"].(string)
	meta, _ := doc.raw["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	namespace, _ := meta["namespace"].(string)
	if kind == "MeshPolicy" || namespace == "" {
		namespace = "istio-system"
	}
	spec, _ := doc.raw["spec"].(map[string]any)
	known := map[string]bool{"targets": true, "peers": true, "origins": true, "principalBinding": true, "originIsOptional": true, "peerIsOptional": true}
	for field := range spec {
		if !known[field] {
			return nil, &inputError{fmt.Sprintf("%s: spec.%s is not translated (v1alpha1 fields read: targets, peers, origins, principalBinding, originIsOptional, peerIsOptional)", doc.where(), field)}
		}
	}
	if binding, _ := spec["principalBinding"].(string); binding != "" && binding != "USE_ORIGIN" {
		return nil, &inputError{fmt.Sprintf("%s: principalBinding %s has no modern equivalent (request.auth.principal is always the origin's); remove it", doc.where(), binding)}
	}
	var selectors []map[string]any
	targets, _ := spec["targets"].([]any)
	for _, target := range targets {
		t, _ := target.(map[string]any)
		if ports, ok := t["ports"]; ok && ports != nil {
			return nil, &inputError{fmt.Sprintf("%s: targets[].ports is not translated: use a port-level PeerAuthentication", doc.where())}
		}
		service, _ := t["name"].(string)
		selectors = append(selectors, map[string]any{"matchLabels": map[string]any{"app": service}})
	}
	if len(selectors) == 0 {
		selectors = []map[string]any{nil}
	}
	objectName := func(suffix string, i int) string {
		if len(selectors) == 1 {
			return name + suffix
		}
		return fmt.Sprintf("%s%s-%d", name, suffix, i)
	}
	var out []document
	add := func(apiVersion, kind, objectName string, spec map[string]any) {
		out = append(out, document{file: doc.file, index: doc.index, raw: map[string]any{
			"apiVersion": apiVersion,
			"kind":       kind,
			"metadata":   map[string]any{"name": objectName, "namespace": namespace},
			"spec":       spec,
		}})
	}
	peers, _ := spec["peers"].([]any)
	origins, _ := spec["origins"].([]any)
	originOptional, _ := spec["originIsOptional"].(bool)
	for i, selector := range selectors {
		withSelector := func(spec map[string]any, key string) map[string]any {
			if selector != nil {
				if key == "selector" {
					spec[key] = selector
				} else {
					spec[key] = selector["matchLabels"]
				}
			}
			return spec
		}
		for _, peer := range peers {
			p, _ := peer.(map[string]any)
			mtls, ok := p["mtls"]
			if !ok {
				return nil, &inputError{fmt.Sprintf("%s: peers[] other than mtls are not translated", doc.where())}
			}
			mode := "STRICT"
			if m, _ := mtls.(map[string]any); m != nil {
				if requested, _ := m["mode"].(string); requested != "" {
					mode = requested
				}
			}
			spec := map[string]any{"mtls": map[string]any{"mode": mode}}
			if selector != nil {
				spec["selector"] = selector
			}
			add("security.istio.io/v1", "PeerAuthentication", objectName("", i), spec)
		}
		var rules []any
		for _, origin := range origins {
			o, _ := origin.(map[string]any)
			jwt, _ := o["jwt"].(map[string]any)
			if jwt == nil {
				return nil, &inputError{fmt.Sprintf("%s: origins[] without jwt", doc.where())}
			}
			rule := map[string]any{}
			for _, field := range []string{"issuer", "jwksUri", "audiences", "jwtHeaders", "jwtParams"} {
				if value, ok := jwt[field]; ok {
					rule[strings.Replace(strings.Replace(field, "jwtHeaders", "fromHeaders", 1), "jwtParams", "fromParams", 1)] = value
				}
			}
			if headers, ok := rule["fromHeaders"].([]any); ok {
				var converted []any
				for _, h := range headers {
					converted = append(converted, map[string]any{"name": h})
				}
				rule["fromHeaders"] = converted
			}
			rule["forwardOriginalToken"] = true
			rules = append(rules, rule)
		}
		if len(rules) > 0 {
			add("security.istio.io/v1", "RequestAuthentication", objectName("", i),
				withSelector(map[string]any{"jwtRules": rules}, "selector"))
			if !originOptional {
				add("security.istio.io/v1", "AuthorizationPolicy", objectName("-require-jwt", i),
					withSelector(map[string]any{
						"action": "ALLOW",
						"rules":  []any{map[string]any{"from": []any{map[string]any{"source": map[string]any{"requestPrincipals": []any{"*"}}}}}},
					}, "selector"))
			}
		}
	}
	var modern []string
	for _, d := range out {
		text, _ := sigyaml.Marshal(d.raw)
		modern = append(modern, string(text))
	}
	fmt.Fprintf(os.Stderr, "note: %s: Istio removed authentication.istio.io/v1alpha1 (%s) in 1.6; translated to its modern form:\n---\n%s", doc.where(), kind, strings.Join(modern, "---\n"))
	return out, nil
}
