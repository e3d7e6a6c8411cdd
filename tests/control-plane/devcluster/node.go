package main

// One real node beside the control plane (`up --node`): containerd (Debian's, with runc and the
// CNI plugins), kubelet, kube-proxy and kube-scheduler, so that a chart's pods run as they do in
// a user's cluster. It needs root and changes the host (a bridge, iptables rules, sysctls,
// cgroups, mounts, network namespaces, a few fixed paths kubelet and containerd insist on), so
// everything it is about to change is recorded first (node-state.json) and put back by
// teardownNode — on a clean stop, on `down`, and by the next `up` after a crash — which then
// checks that the host is as it found it and says what it had to clean.
//
// The network stays on this machine: a private bridge, the pods' network namespaces, no
// masquerade, no forwarding off the bridge; the API server listens on the bridge's address only,
// which is dropped on every other interface; pods may reach that address and each other, and
// nothing else on the host.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
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

// Paths kubelet and containerd use whatever they are told; what the run adds there goes again.
var fixedPaths = []string{
	"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/netns",
	"/run/containerd", "/opt/containerd", "/etc/cni", "/opt/cni", "/usr/libexec/kubernetes",
	"/var/lib/containerd", "/etc/kubernetes",
}

// Sysctls kubelet, kube-proxy or the bridge plugin may set; put back as they were.
var nodeSysctls = []string{
	"net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/all/route_localnet",
	"net/ipv6/conf/all/forwarding", "net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes", "net/netfilter/nf_conntrack_max",
	"net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

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
// what the run changes, recorded before it changes it

type nodeState struct {
	Pid      int                 `json:"pid"` // the supervisor's
	Dir      string              `json:"dir"`
	Bridge   string              `json:"bridge"`
	Sysctls  map[string]string   `json:"sysctls"`
	Paths    map[string][]string `json:"paths"` // fixed path -> entries before (nil: absent)
	Mounts   []string            `json:"mounts"`
	Links    []string            `json:"links"`
	Iptables map[string][]string `json:"iptables"`
	NftTabs  []string            `json:"nftTables"`
	Socket   string              `json:"containerdSocket"`
	KubeProx string              `json:"kubeProxy"`
}

// The record lives in one place per machine (there is one node per machine), so that whichever
// run comes next finds what a killed one left, whatever its directory.
const nodeStateFile = "/run/roster-devcluster-node.json"

func recordHost(p paths, bin string) (*nodeState, error) {
	st := &nodeState{
		Pid: os.Getpid(), Dir: p.dir, Bridge: nodeBridge, Sysctls: map[string]string{}, Paths: map[string][]string{},
		Iptables: iptablesRules(), NftTabs: nftTables(), Mounts: mountPoints(), Links: links(),
		Socket: p.f("containerd/containerd.sock"), KubeProx: filepath.Join(bin, "kube-proxy"),
	}
	for _, s := range nodeSysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			st.Sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	for _, root := range fixedPaths {
		if entries, ok := walk(root); ok {
			st.Paths[root] = entries
		}
	}
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return nil, err
	}
	return st, os.WriteFile(nodeStateFile, b, 0o600)
}

// walk lists root and everything under it (false: root is absent).
func walk(root string) ([]string, bool) {
	if _, err := os.Lstat(root); err != nil {
		return nil, false
	}
	out := []string{}
	_ = filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err == nil {
			out = append(out, path)
		}
		return nil
	})
	return out, true
}

func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// iptablesRules is the host's rules without counters, per family and table: chains that are
// not built in, rules, and built-in chains' policies other than ACCEPT.
func iptablesRules() map[string][]string {
	out := map[string][]string{}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		b, err := exec.Command(tool).Output()
		if err != nil {
			continue
		}
		table := ""
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			switch {
			case strings.HasPrefix(l, "*"):
				table = l[1:]
			case strings.HasPrefix(l, ":"):
				f := strings.Fields(l[1:])
				if len(f) >= 2 && (f[1] == "-" || f[1] != "ACCEPT") {
					lines = append(lines, table+" :"+f[0]+" "+f[1])
				}
			case strings.HasPrefix(l, "-A "):
				lines = append(lines, table+" "+l)
			}
		}
		sort.Strings(lines)
		out[tool] = lines
	}
	return out
}

func nftTables() []string {
	b, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l = strings.TrimSpace(strings.TrimPrefix(l, "table ")); l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
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
	rules4 := [][]string{
		// INPUT: the bridge's address answers the host itself and the pods, nobody else; pods
		// reach no other address of the host.
		{"-A", nodeChainIn, "-i", "lo", "-j", "RETURN"},
		// Replies to what the host opened (the API server calling a webhook through its
		// Service: conntrack has already turned the masqueraded address back into the host's).
		{"-A", nodeChainIn, "-i", nodeBridge, "-m", "conntrack", "--ctstate", "ESTABLISHED", "--ctdir", "REPLY", "-j", "RETURN"},
		{"-A", nodeChainIn, "-i", nodeBridge, "-d", gw, "-j", "RETURN"},
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
			"type": "bridge", "bridge": nodeBridge, "isGateway": true, "ipMasq": false, "hairpinMode": false,
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
	kubeletCfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
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
`, p.f("containerd/containerd.sock"), nn.gateway, k.f("ca.crt"), cidr, nodeDir(p, "pod-logs"), nodeDir(p, "volume-plugins"))
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

// ---------------------------------------------------------------------------------------------
// teardown

// teardownNode puts the host back as node-state.json recorded it: processes by PID (the pods'
// containers by their cgroups, containerd's shims by the socket they serve), mounts, network
// namespaces, cgroups, the bridge, iptables rules and chains, nftables tables, sysctls and
// files under kubelet's and containerd's fixed paths. Then it compares the host with the record
// and returns what it could not put back.
func teardownNode() error {
	b, err := os.ReadFile(nodeStateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var st nodeState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", nodeStateFile, err)
	}
	if st.Pid != os.Getpid() && alive(st.Pid, "devcluster") {
		return fmt.Errorf("the node of the run in %s (pid %d) is still up; stop it first", st.Dir, st.Pid)
	}
	p := paths{st.Dir}
	var cleaned []string
	note := func(format string, args ...any) { cleaned = append(cleaned, fmt.Sprintf(format, args...)) }

	// 1. Processes: the pods' containers (whatever is in kubelet's cgroups), then containerd's
	// shims for this run's socket, then anything else still holding the socket path.
	for round := 0; round < 50; round++ {
		pids := cgroupPids()
		shims := findProcesses(func(argv []string) bool {
			return strings.Contains(filepath.Base(argv[0]), "containerd-shim") && strings.Contains(strings.Join(argv, " "), st.Socket)
		})
		if len(pids)+len(shims) == 0 {
			break
		}
		if round == 0 {
			note("killed %d container processes and %d shims", len(pids), len(shims))
		}
		for _, pid := range append(pids, shims...) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// 2. kube-proxy's rules (its own cleanup), then ours, then chains it left.
	if _, err := os.Stat(st.KubeProx); err == nil {
		if out, err := exec.Command(st.KubeProx, "--cleanup", "--v=0").CombinedOutput(); err != nil {
			note("kube-proxy --cleanup: %v: %s", err, lastLine(string(out)))
		}
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, pair := range [][2]string{{"INPUT", nodeChainIn}, {"FORWARD", nodeChainFw}} {
			for exec.Command(tool, "-w", "-D", pair[0], "-j", pair[1]).Run() == nil {
			}
			if exec.Command(tool, "-w", "-F", pair[1]).Run() == nil {
				_ = exec.Command(tool, "-w", "-X", pair[1]).Run()
			}
		}
	}
	removeNewChains(st.Iptables)
	for _, t := range nftTables() {
		if !contains(st.NftTabs, t) {
			if f := strings.Fields(t); len(f) == 2 && run("nft", "delete", "table", f[0], f[1]) == nil {
				note("removed nftables table %s", t)
			}
		}
	}

	// 3. Mounts the run made (pods' volumes, containers' root file systems, network namespaces),
	// deepest first.
	roots := append([]string{st.Dir}, fixedPaths...)
	for round := 0; round < 5; round++ {
		var todo []string
		for _, m := range mountPoints() {
			if !contains(st.Mounts, m) && under(m, roots) {
				todo = append(todo, m)
			}
		}
		if len(todo) == 0 {
			break
		}
		sort.Slice(todo, func(i, j int) bool { return len(todo[i]) > len(todo[j]) })
		unmounted := 0
		for _, m := range todo {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err == nil {
				unmounted++
			}
		}
		if unmounted > 0 {
			note("unmounted %d mounts", unmounted)
		}
	}

	// 4. cgroups kubelet and runc made.
	for _, dir := range cgroupDirs() {
		removeTree(dir, func(d string) error { return syscall.Rmdir(d) })
	}

	// 5. The pods' veths (the kernel removes them with their namespaces, but not at once) and
	// the bridge.
	for round := 0; round < 50; round++ {
		var extra []string
		for _, l := range links() {
			if !contains(st.Links, l) && strings.HasPrefix(l, "veth") {
				extra = append(extra, l)
			}
		}
		if len(extra) == 0 {
			break
		}
		for _, l := range extra {
			if round == 0 {
				_ = exec.Command("ip", "link", "del", l).Run()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := net.InterfaceByName(st.Bridge); err == nil {
		if err := run("ip", "link", "del", st.Bridge); err != nil {
			note("%v", err)
		}
	}

	// 6. sysctls.
	for s, v := range st.Sysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil && strings.TrimSpace(string(b)) != v {
			if err := os.WriteFile("/proc/sys/"+s, []byte(v), 0o644); err == nil {
				note("restored %s to %s", strings.ReplaceAll(s, "/", "."), v)
			}
		}
	}

	// 7. Files under the fixed paths that were not there before — except under a containerd
	// that runs beside this one (the machine's own), whose files these may be.
	for _, root := range ownedPaths() {
		before, existed := st.Paths[root]
		now, _ := walk(root)
		sort.Slice(now, func(i, j int) bool { return len(now[i]) > len(now[j]) })
		removed := 0
		for _, path := range now {
			if (!existed || !contains(before, path)) && !mounted(path) && os.Remove(path) == nil {
				removed++
			}
		}
		if removed > 0 {
			note("removed %d entries under %s", removed, root)
		}
	}

	// The check: what differs from the record now is what teardown could not put back.
	var left []string
	if pids := cgroupPids(); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes in kubelet's cgroups: %v", pids))
	}
	if dirs := cgroupDirs(); len(dirs) > 0 {
		left = append(left, fmt.Sprintf("cgroups: %v", dirs))
	}
	for _, m := range mountPoints() {
		if !contains(st.Mounts, m) && under(m, roots) {
			left = append(left, "mount "+m)
		}
	}
	for _, l := range links() {
		if !contains(st.Links, l) && (l == st.Bridge || strings.HasPrefix(l, "veth")) {
			left = append(left, "interface "+l)
		}
	}
	now := iptablesRules()
	for tool, before := range st.Iptables {
		for _, d := range diffLines(before, now[tool]) {
			left = append(left, tool+": "+d)
		}
	}
	for s, v := range st.Sysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil && strings.TrimSpace(string(b)) != v {
			left = append(left, fmt.Sprintf("sysctl %s = %s (was %s)", s, strings.TrimSpace(string(b)), v))
		}
	}
	for _, root := range ownedPaths() {
		before, existed := st.Paths[root]
		now, _ := walk(root)
		for _, path := range now {
			if !existed || !contains(before, path) {
				left = append(left, "file "+path)
			}
		}
	}
	summary := "devcluster: node teardown: host as recorded"
	if len(cleaned) > 0 {
		summary += " (" + strings.Join(cleaned, "; ") + ")"
	}
	if len(left) > 0 {
		return fmt.Errorf("node teardown left the host changed:\n  - %s", strings.Join(left, "\n  - "))
	}
	fmt.Fprintln(os.Stderr, summary)
	_ = os.WriteFile(p.f("node-teardown.log"), []byte(summary+"\n"), 0o644)
	return os.Remove(nodeStateFile)
}

// leftoverNode puts back what a node run that was killed before its teardown left on the host.
// dir: only the run of that directory (`down`); empty: any (`up --node`, which first gives a run
// that is stopping the time to finish its own teardown).
func leftoverNode(dir string) error {
	b, err := os.ReadFile(nodeStateFile)
	if err != nil {
		return nil
	}
	var st nodeState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", nodeStateFile, err)
	}
	if dir != "" && st.Dir != dir {
		return nil
	}
	// A run that is stopping (its lifeline just closed) finishes its own teardown first.
	for i := 0; dir == "" && i < 600 && alive(st.Pid, "devcluster"); i++ {
		if i == 0 {
			fmt.Fprintf(os.Stderr, "devcluster: waiting for the node run in %s (pid %d) to stop\n", st.Dir, st.Pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if alive(st.Pid, "devcluster") {
		return nil // a live run: preflight says so
	}
	if _, err := os.Stat(nodeStateFile); err != nil {
		return nil // it tore itself down
	}
	fmt.Fprintf(os.Stderr, "devcluster: a node run (pid %d, %s) ended without its teardown: tearing it down\n", st.Pid, st.Dir)
	return teardownNode()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func under(path string, roots []string) bool {
	for _, r := range roots {
		if path == r || strings.HasPrefix(path, r+"/") {
			return true
		}
	}
	return false
}

func mounted(path string) bool { return contains(mountPoints(), path) }

// diffLines names the lines added to or missing from before.
func diffLines(before, now []string) []string {
	var out []string
	for _, l := range now {
		if !contains(before, l) {
			out = append(out, "added "+l)
		}
	}
	for _, l := range before {
		if !contains(now, l) {
			out = append(out, "missing "+l)
		}
	}
	return out
}

// removeNewChains deletes the rules and chains (kubelet's and kube-proxy's KUBE-*) that were not
// recorded, rules first.
func removeNewChains(before map[string][]string) {
	for tool, lines := range iptablesRules() {
		bin := strings.TrimSuffix(tool, "-save")
		for _, l := range lines {
			if contains(before[tool], l) {
				continue
			}
			table, rule, _ := strings.Cut(l, " ")
			if strings.HasPrefix(rule, "-A ") {
				args := append([]string{"-w", "-t", table, "-D"}, splitRule(strings.TrimPrefix(rule, "-A "))...)
				_ = exec.Command(bin, args...).Run()
			}
		}
		for _, l := range lines {
			if contains(before[tool], l) {
				continue
			}
			table, rule, _ := strings.Cut(l, " ")
			if strings.HasPrefix(rule, ":") {
				chain := strings.Fields(rule[1:])[0]
				_ = exec.Command(bin, "-w", "-t", table, "-F", chain).Run()
				_ = exec.Command(bin, "-w", "-t", table, "-X", chain).Run()
			}
		}
	}
}

// splitRule splits an iptables-save rule into arguments, keeping quoted strings (comments) whole.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case c == '\\' && quoted && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// cgroupDirs lists kubelet's pod cgroups in every hierarchy.
func cgroupDirs() []string {
	var out []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		d := filepath.Join("/sys/fs/cgroup", e.Name(), "kubepods")
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil {
		out = append(out, "/sys/fs/cgroup/kubepods")
	}
	return out
}

func cgroupPids() []int {
	seen := map[int]bool{}
	for _, dir := range cgroupDirs() {
		_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || info.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	var out []int
	for pid := range seen {
		out = append(out, pid)
	}
	sort.Ints(out)
	return out
}

// removeTree removes the directories under root, deepest first (cgroup directories cannot be
// removed with their files, only as directories).
func removeTree(root string, rm func(string) error) {
	var dirs []string
	_ = filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for round := 0; round < 20; round++ {
		failed := false
		for _, d := range dirs {
			if _, err := os.Stat(d); err == nil && rm(d) != nil {
				failed = true
			}
		}
		if !failed {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func findProcess(match func([]string) bool) int {
	if pids := findProcesses(match); len(pids) > 0 {
		return pids[0]
	}
	return 0
}

func findProcesses(match func([]string) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(b) == 0 {
			continue
		}
		if argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"); match(argv) {
			out = append(out, pid)
		}
	}
	return out
}

// ownedPaths are the fixed paths teardown may clean: all of them, unless another containerd
// runs on this machine (then its state directories are left alone).
func ownedPaths() []string {
	other := findProcess(func(argv []string) bool { return filepath.Base(argv[0]) == "containerd" })
	var out []string
	for _, root := range fixedPaths {
		if other != 0 && strings.Contains(root, "containerd") {
			continue
		}
		out = append(out, root)
	}
	return out
}

// links names the host's network interfaces.
func links() []string {
	ifs, _ := net.Interfaces()
	out := make([]string, 0, len(ifs))
	for _, i := range ifs {
		out = append(out, i.Name)
	}
	sort.Strings(out)
	return out
}
