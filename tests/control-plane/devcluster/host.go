package main

// What a node run changes on the host, recorded before it changes it, and the teardown that
// puts it back and then checks that it did (see node.go).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Paths kubelet and containerd use whatever they are told; what the run adds there goes again.
var fixedPaths = []string{
	"/var/lib/kubelet", "/var/log/containers", "/var/lib/cni", "/run/netns", "/run/containerd",
}

// ours says whether a path under the fixed paths is one the node makes: in /run/netns only
// containerd's cni-* namespaces (an `ip netns add` of someone else's during the run stays).
func ours(path string) bool {
	if strings.HasPrefix(path, "/run/netns/") {
		return strings.HasPrefix(filepath.Base(path), "cni-")
	}
	return true
}

// nodeRule says whether an iptables line is the node's (kubelet's and kube-proxy's KUBE-*
// chains, devcluster's own, and the rules that jump to them): teardown removes and checks only
// those, never another program's rules added meanwhile.
func nodeRule(line string) bool {
	return strings.Contains(line, "KUBE-") || strings.Contains(line, "ROSTER-NODE-")
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
// teardown

// teardownNode puts the host back as the record says: processes by PID (the pods'
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
	// Teardown kills whatever is in kubelet's cgroups and removes kube-proxy's rules: with
	// another kubelet or kube-proxy running (not this run's: those are stopped by now) that would
	// be someone else's pods and Services.
	for _, other := range []string{"kubelet", "kube-proxy"} {
		if pid := findProcess(func(argv []string) bool { return filepath.Base(argv[0]) == other }); pid != 0 {
			return fmt.Errorf("a %s runs on this machine (pid %d) that is not this run's: not tearing down the node of %s over it; stop it, then `devcluster down --dir %s`", other, pid, st.Dir, st.Dir)
		}
	}
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
	// The tables iptables-nft made for the node's rules, once empty (a table holding anyone
	// else's rule stays).
	for _, t := range nftTables() {
		if f := strings.Fields(t); !contains(st.NftTabs, t) && len(f) == 2 && nftEmpty(f[0], f[1]) &&
			run("nft", "delete", "table", f[0], f[1]) == nil {
			note("removed nftables table %s", t)
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
			if !contains(st.Links, l) && strings.HasPrefix(l, "veth") && onBridge(l, st.Bridge) {
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
			if (!existed || !contains(before, path)) && ours(path) && !mounted(path) && os.Remove(path) == nil {
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
		if !contains(st.Links, l) && (l == st.Bridge || (strings.HasPrefix(l, "veth") && onBridge(l, st.Bridge))) {
			left = append(left, "interface "+l)
		}
	}
	now := iptablesRules()
	for tool, before := range st.Iptables {
		for _, d := range diffLines(before, now[tool]) {
			if nodeRule(d) {
				left = append(left, tool+": "+d)
			}
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
			if (!existed || !contains(before, path)) && ours(path) {
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
			if contains(before[tool], l) || !nodeRule(l) {
				continue
			}
			table, rule, _ := strings.Cut(l, " ")
			if strings.HasPrefix(rule, "-A ") {
				args := append([]string{"-w", "-t", table, "-D"}, splitRule(strings.TrimPrefix(rule, "-A "))...)
				_ = exec.Command(bin, args...).Run()
			}
		}
		for _, l := range lines {
			if contains(before[tool], l) || !nodeRule(l) {
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

// onBridge says whether interface l is (or, gone since, was) a port of the bridge: a veth of the
// node's pods, not another program's.
func onBridge(l, bridge string) bool {
	target, err := os.Readlink("/sys/class/net/" + l + "/master")
	return err == nil && filepath.Base(target) == bridge
}

// nftEmpty says whether an nftables table holds no rule (only chains with their hooks).
func nftEmpty(family, name string) bool {
	out, err := exec.Command("nft", "list", "table", family, name).Output()
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(out), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || t == "}" || strings.HasPrefix(t, "table ") || strings.HasPrefix(t, "chain ") ||
			strings.HasPrefix(t, "type ") || strings.HasPrefix(t, "policy ") {
			continue
		}
		return false
	}
	return true
}
