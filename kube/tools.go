//go:build tools

// Kubernetes built from its Go modules: kube-apiserver and etcd are the control plane the
// harness tests its kube client against (tests/kube_apiserver.rs); with the node's programs
// (kubelet, kubeadm, kubectl, the controller manager, the scheduler, kube-proxy, crictl, CoreDNS
// and pause) they make the kind node image of `meshauth images build --kind`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
