package main

// One real node beside the control plane (`up --node`): containerd (Debian's, with runc and the
// CNI plugins), kubelet, kube-proxy and kube-scheduler, so that a chart's pods run as they do in
// a user's cluster. It needs root and changes the host (a bridge, iptables rules, sysctls,
// cgroups, mounts, network namespaces, a few fixed paths kubelet and containerd insist on), so
// everything it is about to change is recorded first (host.go) and put back by
// teardownNode — on a clean stop, on `down`, and by the next `up` after a crash — which then
// checks that the host is as it found it and says what it had to clean.
//
// The network stays on this machine: a private bridge, the pods' network namespaces, no
// masquerade, no forwarding off the bridge; the API server listens on the bridge's address only,
// which is dropped on every other interface; pods may reach that address and each other, and
// nothing else on the host.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	nodeName    = "roster-node"
	nodeBridge  = "roster0"
	nodeChainIn = "ROSTER-NODE-INPUT"
	nodeChainFw = "ROSTER-NODE-FORWARD"
	cniBinDir   = "/usr/lib/cni"
	// exit status of `up --node` and `preflight` when the node cannot run on this machine (as
	// opposed to failing): callers may skip, and say why.
	exitCannotRun = 4
)

type nodeOpts struct {
	enabled bool
	cidr    string
	images  multiFlag
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// nodeNet is the bridge's subnet: pods get .2 and up, the host (API server, kubelet) is .1.
type nodeNet struct {
	cidr    *net.IPNet
	gateway net.IP
}

func parseNodeNet(cidr string) (nodeNet, error) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil || ip.To4() == nil {
		return nodeNet{}, fmt.Errorf("--node-cidr %q is not an IPv4 CIDR", cidr)
	}
	if ones, _ := n.Mask.Size(); ones > 28 || ones < 16 {
		return nodeNet{}, fmt.Errorf("--node-cidr %q: use a /16 to /28", cidr)
	}
	gw := make(net.IP, 4)
	copy(gw, n.IP.To4())
	gw[3]++
	return nodeNet{cidr: n, gateway: gw}, nil
}

// ---------------------------------------------------------------------------------------------
// preflight

// nodePreflight lists why the node cannot run here; empty: it can.
func nodePreflight(bin string, nn nodeNet) []string {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "not root: kubelet and containerd need root (run as root, or skip the node tier)")
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fs), "\toverlay\n") {
		why = append(why, "no overlayfs in /proc/filesystems (containerd's snapshotter): `modprobe overlay`")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			why = append(why, "no cgroup hierarchy with the memory controller under /sys/fs/cgroup")
		}
	}
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "iptables-save", "ip6tables", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			why = append(why, fmt.Sprintf("%s not on PATH (Debian: apt-get install containerd runc containernetworking-plugins iptables conntrack iproute2)", tool))
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			why = append(why, fmt.Sprintf("CNI plugin %s/%s missing (Debian: containernetworking-plugins)", cniBinDir, plugin))
		}
	}
	for _, b := range []string{"kubelet", "kube-proxy", "kube-scheduler", "pause.tar"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			why = append(why, fmt.Sprintf("%s not found in %s; build it with tests/control-plane/build.sh", b, bin))
		}
	}
	if _, err := net.InterfaceByName(nodeBridge); err == nil {
		why = append(why, fmt.Sprintf("a network interface %s exists already (another node run? `devcluster down` it, or `ip link del %s`)", nodeBridge, nodeBridge))
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (nn.cidr.Contains(ipn.IP) || ipn.Contains(nn.cidr.IP)) {
				why = append(why, fmt.Sprintf("the node's pod network %s overlaps %s on this machine (pick another with --node-cidr)", nn.cidr, ipn))
			}
		}
	}
	if pid := findProcess(func(argv []string) bool { return filepath.Base(argv[0]) == "kubelet" }); pid != 0 {
		why = append(why, fmt.Sprintf("a kubelet runs already (pid %d): one node per machine", pid))
	}
	if l, err := net.Listen("tcp", ":10250"); err != nil {
		why = append(why, fmt.Sprintf("kubelet's port 10250 is taken (%v)", err))
	} else {
		l.Close()
	}
	return why
}

func preflightCmd(args []string) error {
	fs := flag.NewFlagSet("preflight", flag.ExitOnError)
	bin := fs.String("bin", os.Getenv("ROSTER_CP_BIN"), "directory holding the node's binaries")
	cidr := fs.String("node-cidr", "10.89.0.0/24", "the node's pod network")
	_ = fs.Parse(args)
	nn, err := parseNodeNet(*cidr)
	if err != nil {
		return err
	}
	if why := nodePreflight(*bin, nn); len(why) > 0 {
		fmt.Fprintf(os.Stderr, "devcluster: the node cannot run here:\n  - %s\n", strings.Join(why, "\n  - "))
		os.Exit(exitCannotRun)
	}
	fmt.Println("node: can run")
	return nil
}

// ---------------------------------------------------------------------------------------------
// bring-up

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nodeNetwork makes the bridge and the rules that keep the node's traffic on this machine.
func nodeNetwork(nn nodeNet) error {
	ones, _ := nn.cidr.Mask.Size()
	gw := nn.gateway.String()
	for _, c := range [][]string{
		{"link", "add", nodeBridge, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", gw, ones), "dev", nodeBridge},
		{"link", "set", nodeBridge, "up"},
	} {
		if err := run("ip", c...); err != nil {
			return err
		}
	}
	return nil
}

// nodeRules keeps the node's traffic on this machine: on the bridge's address, pods reach the
// API server's port and the kubelet's (as on any node), and no other service of the host (the
// host's services listening on every address would otherwise answer them there; seen).
func nodeRules(nn nodeNet, apiPort int) error {
	gw := nn.gateway.String()
	rules4 := [][]string{
		// INPUT: the bridge's address answers the host itself and the pods, nobody else; pods
		// reach no other address of the host.
		{"-A", nodeChainIn, "-i", "lo", "-j", "RETURN"},
		// Replies to what the host opened (the API server calling a webhook through its
		// Service: conntrack has already turned the masqueraded address back into the host's).
		{"-A", nodeChainIn, "-i", nodeBridge, "-m", "conntrack", "--ctstate", "ESTABLISHED", "--ctdir", "REPLY", "-j", "RETURN"},
		{"-A", nodeChainIn, "-i", nodeBridge, "-d", gw, "-p", "tcp", "--dport", strconv.Itoa(apiPort), "-j", "RETURN"},
		{"-A", nodeChainIn, "-i", nodeBridge, "-d", gw, "-p", "tcp", "--dport", "10250", "-j", "RETURN"},
		{"-A", nodeChainIn, "-i", nodeBridge, "-j", "DROP"},
		{"-A", nodeChainIn, "-d", gw, "-j", "DROP"},
		// FORWARD: between pods only; nothing leaves or enters the bridge through the host.
		{"-A", nodeChainFw, "-i", nodeBridge, "!", "-o", nodeBridge, "-j", "DROP"},
		{"-A", nodeChainFw, "-o", nodeBridge, "!", "-i", nodeBridge, "-j", "DROP"},
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) == "0" {
		// The bridge plugin turns forwarding on (for traffic between pods through Services);
		// the host forwarded nothing before and forwards nothing else now.
		rules4 = append(rules4, []string{"-A", nodeChainFw, "!", "-i", nodeBridge, "!", "-o", nodeBridge, "-j", "DROP"})
	}
	rules6 := [][]string{
		{"-A", nodeChainIn, "-i", nodeBridge, "-j", "DROP"},
		{"-A", nodeChainFw, "-i", nodeBridge, "-j", "DROP"},
		{"-A", nodeChainFw, "-o", nodeBridge, "-j", "DROP"},
	}
	for tool, rules := range map[string][][]string{"iptables": rules4, "ip6tables": rules6} {
		for _, chain := range []string{nodeChainIn, nodeChainFw} {
			if err := run(tool, "-w", "-N", chain); err != nil {
				return err
			}
		}
		for _, r := range rules {
			if err := run(tool, append([]string{"-w"}, r...)...); err != nil {
				return err
			}
		}
		if err := run(tool, "-w", "-I", "INPUT", "1", "-j", nodeChainIn); err != nil {
			return err
		}
		if err := run(tool, "-w", "-I", "FORWARD", "1", "-j", nodeChainFw); err != nil {
			return err
		}
	}
	return nil
}

type nodeProcs struct {
	containerd, kubelet, proxy, scheduler *child
}

func (n *nodeProcs) all() []*child {
	var out []*child
	for _, c := range []*child{n.kubelet, n.proxy, n.scheduler, n.containerd} {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// stop stops kubelet first (no new containers), then the rest.
func (n *nodeProcs) stop() {
	for _, c := range n.all() {
		c.stop(10 * time.Second)
	}
}

func nodeDir(p paths, parts ...string) string {
	return filepath.Join(append([]string{p.dir, "node"}, parts...)...)
}

// startContainerd starts containerd with its state under the run's directory and imports the
// sandbox image and the images asked for.
func startContainerd(ctx context.Context, p paths, bin string, nn nodeNet, images []string) (*child, error) {
	sock := p.f("containerd/containerd.sock")
	for _, d := range []string{p.f("containerd"), nodeDir(p, "cni"), nodeDir(p, "cni-ipam")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	pause, err := os.ReadFile(filepath.Join(bin, "pause.ref"))
	if err != nil {
		return nil, fmt.Errorf("pause image name: %w", err)
	}
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
# Plugins that would write outside the run's directory or are of no use here.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # Without CAP_SYS_RESOURCE no sandbox may lower its OOM score: runc would fail every pod.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, p.f("containerd/root"), p.f("containerd/state"), sock, sock+".ttrpc", strings.TrimSpace(string(pause)),
		p.f("containerd/runc"), cniBinDir, nodeDir(p, "cni"))
	if err := os.WriteFile(p.f("containerd/config.toml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	ones, _ := nn.cidr.Mask.Size()
	conflist := map[string]any{
		"cniVersion": "1.0.0", "name": "roster-node",
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": nodeBridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": nodeDir(p, "cni-ipam"),
				"ranges":  []any{[]any{map[string]any{"subnet": fmt.Sprintf("%s/%d", nn.cidr.IP, ones), "gateway": nn.gateway.String()}}},
				"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
			},
		}},
	}
	b, _ := json.MarshalIndent(conflist, "", "  ")
	if err := os.WriteFile(nodeDir(p, "cni", "10-roster-node.conflist"), b, 0o600); err != nil {
		return nil, err
	}
	c, err := start(p, "containerd", mustLook("containerd"), []string{"--config", p.f("containerd/config.toml")})
	if err != nil {
		return nil, err
	}
	for {
		if err := exec.Command("ctr", "--address", sock, "version").Run(); err == nil {
			break
		}
		select {
		case err := <-c.done:
			c.done <- err
			return nil, fmt.Errorf("containerd exited while starting (%v):\n%s", err, tail(p.f("containerd.log"), 20))
		case <-ctx.Done():
			return nil, fmt.Errorf("containerd not ready in time:\n%s", tail(p.f("containerd.log"), 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, img := range append([]string{filepath.Join(bin, "pause.tar")}, images...) {
		if err := run("ctr", "--address", sock, "-n", "k8s.io", "images", "import", img); err != nil {
			return c, fmt.Errorf("importing %s: %w", img, err)
		}
	}
	return c, nil
}

func mustLook(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

// nodeIdentity issues kubelet's client certificate (group system:nodes) and writes its
// kubeconfig; the API server runs RBAC only (no Node authorizer), so system:nodes is bound to the
// system:node ClusterRole by startNode.
func nodeIdentity(p paths, k *pki, server string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, k.ca, &key.PublicKey, k.caKey)
	if err != nil {
		return "", err
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	b64 := base64.StdEncoding.EncodeToString
	file := nodeDir(p, "kubelet.kubeconfig")
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\n    certificate-authority-data: %s\nusers:\n- name: node\n  user:\n    client-certificate-data: %s\n    client-key-data: %s\ncontexts:\n- name: c\n  context: {cluster: c, user: node}\ncurrent-context: c\n",
		server, b64(k.caPEM), b64(pemBlock("CERTIFICATE", der)), b64(pemBlock("EC PRIVATE KEY", keyDER)))
	return file, os.WriteFile(file, []byte(cfg), 0o600)
}

// withPodSecurity gives the node's pods Pod Security "baseline" by default (no host network,
// PID or paths, no privilege): without it a Developer of any organization could run a pod as
// root on this machine and read every key on it (seen). It adds the PodSecurity plugin to the
// admission configuration file among extra's flags (written by `roster certificate`), or makes
// one.
func withPodSecurity(p paths, extra []string) ([]string, error) {
	const flag = "--admission-control-config-file="
	base := "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"
	at := -1
	for i, a := range extra {
		if strings.HasPrefix(a, flag) {
			at = i
		}
	}
	if at >= 0 {
		b, err := os.ReadFile(strings.TrimPrefix(extra[at], flag))
		if err != nil {
			return nil, err
		}
		base = string(b)
		if strings.Contains(base, "name: PodSecurity") {
			return extra, nil
		}
	}
	// The plugins list is the file's last key (as roster certificate writes it): append an entry
	// with the list's own indentation.
	i := strings.Index(base, "\nplugins:\n")
	if i < 0 && !strings.HasPrefix(base, "plugins:\n") {
		return nil, fmt.Errorf("%s: no top-level plugins list to add PodSecurity to", strings.TrimPrefix(extra[at], flag))
	}
	indent := ""
	for _, l := range strings.Split(base[i+1:], "\n")[1:] {
		if t := strings.TrimLeft(l, " "); strings.HasPrefix(t, "- ") {
			indent = l[:len(l)-len(t)]
			break
		}
	}
	entry := strings.Join([]string{
		"- name: PodSecurity",
		"  configuration:",
		"    apiVersion: pod-security.admission.config.k8s.io/v1",
		"    kind: PodSecurityConfiguration",
		"    defaults: {enforce: baseline, enforce-version: latest}",
	}, "\n"+indent)
	merged := strings.TrimRight(base, "\n") + "\n" + indent + entry + "\n"
	file := p.f("admission-node.yaml")
	if err := os.WriteFile(file, []byte(merged), 0o600); err != nil {
		return nil, err
	}
	out := append([]string{}, extra...)
	if at >= 0 {
		out[at] = flag + file
	} else {
		out = append(out, flag+file)
	}
	return out, nil
}

// kubeletServing issues the kubelet's serving certificate from the cluster CA, so that the API
// server verifies whom it reaches at the node's address.
func kubeletServing(p paths, k *pki, nn nodeNet) (string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "system:node:" + nodeName},
		DNSNames: []string{nodeName}, IPAddresses: []net.IP{nn.gateway},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, k.ca, &key.PublicKey, k.caKey)
	if err != nil {
		return "", "", err
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	crt, kf := nodeDir(p, "kubelet-serving.crt"), nodeDir(p, "kubelet-serving.key")
	if err := os.WriteFile(crt, pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return "", "", err
	}
	return crt, kf, os.WriteFile(kf, pemBlock("EC PRIVATE KEY", keyDER), 0o600)
}

// startNode runs kube-scheduler, kube-proxy and kubelet against the API server and waits for
// the node to be Ready.
func startNode(ctx context.Context, p paths, o upOpts, k *pki, server string, nn nodeNet, procs *nodeProcs) error {
	client := k.adminClient()
	binding := `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"devcluster:nodes"},` +
		`"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"system:node"},` +
		`"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"system:nodes"}]}`
	resp, err := client.Post(server+"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "application/json", strings.NewReader(binding))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
		return fmt.Errorf("binding system:nodes to system:node: %s", resp.Status)
	}
	kubeletKubeconfig, err := nodeIdentity(p, k, server)
	if err != nil {
		return fmt.Errorf("kubelet's certificate: %w", err)
	}
	ones, _ := nn.cidr.Mask.Size()
	cidr := fmt.Sprintf("%s/%d", nn.cidr.IP, ones)

	if procs.scheduler, err = start(p, "kube-scheduler", filepath.Join(o.bin, "kube-scheduler"), []string{
		"--kubeconfig=" + p.kubeconfig(), "--leader-elect=false", "--secure-port=0",
	}); err != nil {
		return err
	}

	proxyCfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
mode: iptables
hostnameOverride: %s
bindAddress: %s
clusterCIDR: %s
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
nodePortAddresses: [%s/32]
iptables:
  localhostNodePorts: false
# Zero: leave the host's conntrack settings alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, p.kubeconfig(), nodeName, nn.gateway, cidr, freePort("127.0.0.1"), freePort("127.0.0.1"), nn.gateway)
	if err := os.WriteFile(nodeDir(p, "kube-proxy.yaml"), []byte(proxyCfg), 0o600); err != nil {
		return err
	}
	if procs.proxy, err = start(p, "kube-proxy", filepath.Join(o.bin, "kube-proxy"), []string{
		"--config=" + nodeDir(p, "kube-proxy.yaml"),
	}); err != nil {
		return err
	}

	for _, d := range []string{"kubelet", "kubelet-certs", "pod-logs", "volume-plugins"} {
		if err := os.MkdirAll(nodeDir(p, d), 0o700); err != nil {
			return err
		}
	}
	servingCrt, servingKey, err := kubeletServing(p, k, nn)
	if err != nil {
		return fmt.Errorf("kubelet's serving certificate: %w", err)
	}
	kubeletCfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
tlsCertFile: %q
tlsPrivateKeyFile: %q
kind: KubeletConfiguration
# This machine mounts cgroup v1; kubelet 1.35+ refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://%s
address: %s
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization:
  mode: Webhook
podCIDR: %s
# No cluster DNS and no host resolver inside pods: their traffic stays on this machine.
resolvConf: ""
podLogsDir: %q
volumePluginDir: %q
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`, servingCrt, servingKey, p.f("containerd/containerd.sock"), nn.gateway, k.f("ca.crt"), cidr, nodeDir(p, "pod-logs"), nodeDir(p, "volume-plugins"))
	if err := os.WriteFile(nodeDir(p, "kubelet.yaml"), []byte(kubeletCfg), 0o600); err != nil {
		return err
	}
	if procs.kubelet, err = start(p, "kubelet", filepath.Join(o.bin, "kubelet"), []string{
		"--config=" + nodeDir(p, "kubelet.yaml"),
		"--kubeconfig=" + kubeletKubeconfig,
		"--root-dir=" + nodeDir(p, "kubelet"),
		"--cert-dir=" + nodeDir(p, "kubelet-certs"),
		"--hostname-override=" + nodeName,
		"--node-ip=" + nn.gateway.String(),
	}); err != nil {
		return err
	}
	// Ready: the kubelet reports it, and the node lifecycle controller has lifted the taint
	// that keeps pods off a node not yet ready.
	url := server + "/api/v1/nodes/" + nodeName
	for {
		if ready, why := nodeReady(client, url); ready {
			return nil
		} else {
			select {
			case err := <-procs.kubelet.done:
				procs.kubelet.done <- err
				return fmt.Errorf("kubelet exited (%v):\n%s", err, tail(p.f("kubelet.log"), 30))
			case err := <-procs.containerd.done:
				procs.containerd.done <- err
				return fmt.Errorf("containerd exited (%v):\n%s", err, tail(p.f("containerd.log"), 30))
			case <-ctx.Done():
				return fmt.Errorf("node %s not ready in time (%s); kubelet's log ends with:\n%s", nodeName, why, tail(p.f("kubelet.log"), 30))
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

func nodeReady(client *http.Client, url string) (bool, string) {
	resp, err := client.Get(url)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var node struct {
		Spec struct {
			Taints []struct{ Key string } `json:"taints"`
		} `json:"spec"`
		Status struct {
			Conditions []struct{ Type, Status, Message string } `json:"conditions"`
		} `json:"status"`
	}
	if resp.StatusCode != 200 {
		return false, "not registered yet"
	}
	if err := json.NewDecoder(resp.Body).Decode(&node); err != nil {
		return false, err.Error()
	}
	for _, t := range node.Spec.Taints {
		if strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			return false, "tainted " + t.Key
		}
	}
	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True", c.Message
		}
	}
	return false, "no Ready condition yet"
}
