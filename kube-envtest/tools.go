//go:build tools

// The control plane the harness tests its kube client against: kube-apiserver and etcd,
// built from their Go modules.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
