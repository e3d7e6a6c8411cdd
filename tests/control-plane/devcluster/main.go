// Command devcluster runs a real etcd, kube-apiserver and kube-controller-manager on loopback for
// roster's tests and demo, the way controller-runtime's envtest does elsewhere. The controller
// manager runs only the controllers a cluster without nodes needs to behave like a real one:
// namespace deletion, garbage collection of owned objects, aggregation of the admin/edit/view
// ClusterRoles, resource quotas, and service-account tokens. With --node it also runs one real
// node (node.go): containerd, kubelet, kube-proxy, kube-scheduler and the controllers pods need.
//
//	devcluster up        --dir D --bin B [--detach] [--lifeline] [--port N]
//	                     [--node [--node-cidr C] [--image ARCHIVE]...] [-- extra apiserver flags]
//	devcluster status    --dir D
//	devcluster down      --dir D
//	devcluster preflight --bin B [--node-cidr C]   (exit 4: the node cannot run here, and why)
//
// `up` stays in the foreground as the supervisor of its two children (they get SIGKILL if it
// dies, through PR_SET_PDEATHSIG) until SIGTERM/SIGINT, or, with --lifeline, until its standard
// input closes: a test binary that holds the other end of that pipe cannot leave orphans behind,
// however it ends. SIGHUP restarts the kube-apiserver on the same port (tests of roster's retries).
// With --detach it re-executes itself in a new session, waits until the cluster is ready, and
// returns (make demo).
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	// Children are started from this thread only; PDEATHSIG fires when the thread that forked
	// them exits, so it must be the one that lives as long as the process.
	runtime.LockOSThread()
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	case "status":
		err = status(os.Args[2:])
	case "preflight":
		err = preflightCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "devcluster: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: devcluster up|status|down|preflight --dir DIR [--bin DIR] [--detach] [--lifeline] [--port N] [--node [--node-cidr C] [--image ARCHIVE]...] [-- apiserver flags]")
	os.Exit(2)
}

type paths struct{ dir string }

func (p paths) f(name string) string { return filepath.Join(p.dir, name) }
func (p paths) pidFile() string      { return p.f("devcluster.pid") }
func (p paths) readyFile() string    { return p.f("ready") }
func (p paths) childFile() string    { return p.f("children.pid") }
func (p paths) kubeconfig() string   { return p.f("kubeconfig") }

// ---------------------------------------------------------------------------------------------
// up

type upOpts struct {
	dir, bin         string
	detach, lifeline bool
	port             int
	host             string
	timeout          time.Duration
	extra            []string
	node             nodeOpts
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	var o upOpts
	fs.StringVar(&o.dir, "dir", "", "state directory (certificates, etcd data, logs, kubeconfig)")
	fs.StringVar(&o.bin, "bin", os.Getenv("ROSTER_CP_BIN"), "directory holding kube-apiserver and etcd (tests/control-plane/build.sh prints it)")
	fs.BoolVar(&o.detach, "detach", false, "run in the background and return once ready")
	fs.BoolVar(&o.lifeline, "lifeline", false, "shut down when standard input closes")
	fs.IntVar(&o.port, "port", 0, "kube-apiserver secure port (0: a free one)")
	// A loopback address of its own keeps a run's ports clear of every connection made from
	// 127.0.0.1 (the kernel hands out those ephemeral ports from the same range as port 0).
	fs.StringVar(&o.host, "host", "127.0.0.1", "loopback address etcd and kube-apiserver listen on")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long to wait for readiness")
	fs.BoolVar(&o.node.enabled, "node", false, "also run one real node (root; see node.go)")
	fs.StringVar(&o.node.cidr, "node-cidr", "10.89.0.0/24", "the node's pod network (a private bridge)")
	fs.Var(&o.node.images, "image", "with --node: an image archive to import into the node's containerd (repeatable)")
	_ = fs.Parse(args)
	o.extra = fs.Args()
	if o.dir == "" || o.bin == "" {
		return errors.New("up needs --dir and --bin (or ROSTER_CP_BIN)")
	}
	var err error
	if o.dir, err = filepath.Abs(o.dir); err != nil {
		return err
	}
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		return err
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "etcd"} {
		if _, err := os.Stat(filepath.Join(o.bin, b)); err != nil {
			return fmt.Errorf("%s not found in %s; build it with tests/control-plane/build.sh", b, o.bin)
		}
	}
	p := paths{o.dir}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	if err := clearStale(p); err != nil {
		return err
	}
	if ip := net.ParseIP(o.host); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return fmt.Errorf("--host %q is not an IPv4 loopback address (127.0.0.0/8)", o.host)
	}
	if o.node.enabled {
		nn, err := parseNodeNet(o.node.cidr)
		if err != nil {
			return err
		}
		// A node run that died without its teardown (SIGKILL) left the host changed: put it back.
		if err := leftoverNode(""); err != nil {
			return err
		}
		if why := nodePreflight(o.bin, nn); len(why) > 0 {
			fmt.Fprintf(os.Stderr, "devcluster: the node cannot run here:\n  - %s\n", strings.Join(why, "\n  - "))
			os.Exit(exitCannotRun)
		}
		for _, img := range o.node.images {
			if _, err := os.Stat(img); err != nil {
				return fmt.Errorf("--image %s: %v (make image writes target/image/roster-<version>.tar)", img, err)
			}
		}
	}
	if o.port != 0 && !o.node.enabled {
		if err := portFree(o.host, o.port); err != nil {
			return fmt.Errorf("port %d for kube-apiserver is in use (%v); pick another with --port or stop what holds it", o.port, err)
		}
	}
	if o.detach {
		return detach(p, args, o.timeout)
	}
	return supervise(p, o)
}

// clearStale refuses to start over a live run and removes what a dead one left behind.
func clearStale(p paths) error {
	if pid, ok := readPid(p.pidFile()); ok {
		if alive(pid, "devcluster") {
			return fmt.Errorf("a control plane is already running from %s (pid %d); stop it with `make down` or `devcluster down --dir %s`", p.dir, pid, p.dir)
		}
		fmt.Fprintf(os.Stderr, "devcluster: clearing a stale run in %s (pid %d is gone)\n", p.dir, pid)
	}
	killRecordedChildren(p)
	for _, f := range []string{p.pidFile(), p.readyFile(), p.childFile(), p.kubeconfig()} {
		_ = os.Remove(f)
	}
	return os.RemoveAll(p.f("etcd"))
}

func detach(p paths, args []string, timeout time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var rest []string
	for _, a := range args {
		if a != "--detach" && a != "-detach" {
			rest = append(rest, a)
		}
	}
	logf, err := os.Create(p.f("devcluster.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, append([]string{"up"}, rest...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(timeout + 10*time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("control plane exited before it was ready (%v); its log %s ends with:\n%s", err, logf.Name(), tail(logf.Name(), 20))
		case <-deadline:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return fmt.Errorf("control plane not ready after %s; see %s", timeout, logf.Name())
		case <-time.After(200 * time.Millisecond):
			if b, err := os.ReadFile(p.readyFile()); err == nil {
				fmt.Print(string(b))
				return nil
			}
		}
	}
}

type child struct {
	name string
	cmd  *exec.Cmd
	// done delivers the exit once (to whoever watches for it); exited is closed at the exit, for
	// stop, which must not wait for a value someone else took.
	done   chan error
	exited chan struct{}
}

func start(p paths, name, bin string, args []string) (*child, error) {
	logf, err := os.OpenFile(p.f(name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan error, 1), exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logf.Close()
		close(c.exited)
		c.done <- err
	}()
	return c, nil
}

func (c *child) stop(grace time.Duration) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
}

func supervise(p paths, o upOpts) (err error) {
	if err := os.WriteFile(p.pidFile(), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	defer func() {
		for _, f := range []string{p.pidFile(), p.readyFile(), p.childFile()} {
			_ = os.Remove(f)
		}
	}()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	lifeline := make(chan struct{})
	if o.lifeline {
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(lifeline) }()
	}

	// With a node the API server listens on the node's bridge (pods reach it there, through the
	// `kubernetes` Service), and nowhere else.
	h := o.host
	apiHost := h
	node := &nodeProcs{}
	var nn nodeNet
	if o.node.enabled {
		if nn, err = parseNodeNet(o.node.cidr); err != nil {
			return err
		}
		if _, err := recordHost(p, o.bin); err != nil {
			return fmt.Errorf("recording the host before the node changes it: %w", err)
		}
		// Registered first, so it runs last: after every process is stopped.
		defer func() {
			node.stop()
			if terr := teardownNode(); terr != nil {
				err = errors.Join(err, terr)
			}
		}()
		if err := nodeNetwork(nn); err != nil {
			return fmt.Errorf("node network: %w", err)
		}
		apiHost = nn.gateway.String()
	}
	pki, err := makePKI(p.f("pki"), h, apiHost)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	etcdPort, etcdPeer := freePort(h), freePort(h)
	port := o.port
	if port == 0 {
		port = freePort(apiHost)
	}
	if o.node.enabled {
		if err := nodeRules(nn, port); err != nil {
			return fmt.Errorf("node network: %w", err)
		}
	}
	if err := os.WriteFile(p.f("audit-policy.yaml"), []byte(auditPolicy), 0o644); err != nil {
		return err
	}

	etcd, err := start(p, "etcd", filepath.Join(o.bin, "etcd"), []string{
		"--name=default", "--data-dir=" + p.f("etcd"),
		fmt.Sprintf("--listen-client-urls=http://%s:%d", h, etcdPort),
		fmt.Sprintf("--advertise-client-urls=http://%s:%d", h, etcdPort),
		fmt.Sprintf("--listen-peer-urls=http://%s:%d", h, etcdPeer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://%s:%d", h, etcdPeer),
		fmt.Sprintf("--initial-cluster=default=http://%s:%d", h, etcdPeer),
		"--unsafe-no-fsync", "--log-level=warn",
	})
	if err != nil {
		return err
	}
	defer etcd.stop(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if err := waitHTTP(ctx, etcd, &http.Client{}, fmt.Sprintf("http://%s:%d/health", h, etcdPort), `"health":"true"`); err != nil {
		return fmt.Errorf("etcd: %w\n%s", err, tail(p.f("etcd.log"), 20))
	}

	server := fmt.Sprintf("https://%s:%d", apiHost, port)
	apiArgs := []string{
		fmt.Sprintf("--etcd-servers=http://%s:%d", h, etcdPort),
		"--bind-address=" + apiHost, fmt.Sprintf("--secure-port=%d", port),
		"--advertise-address=" + apiHost,
		"--cert-dir=" + pki.dir,
		"--tls-cert-file=" + pki.f("serving.crt"), "--tls-private-key-file=" + pki.f("serving.key"),
		"--client-ca-file=" + pki.f("ca.crt"),
		"--service-account-issuer=" + server,
		"--service-account-key-file=" + pki.f("sa.pub"),
		"--service-account-signing-key-file=" + pki.f("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--profiling=false",
		// Writes only: tests count what roster changes (a resync of an unchanged world must write nothing).
		"--audit-policy-file=" + p.f("audit-policy.yaml"),
		"--audit-log-path=" + p.f("audit.log"), "--audit-log-format=json", "--audit-log-mode=blocking",
	}
	if o.node.enabled {
		// Pods get their ServiceAccount's token; the `kubernetes` Service points at this server;
		// `kubectl logs` reaches the kubelet.
		// No Service may claim an external address: kube-proxy would hand it the host's own
		// connections (the API server's to the kubelet and to roster's webhooks; seen). The
		// kubelet's serving certificate is checked (issued by startNode from this CA).
		apiArgs = append(apiArgs, "--endpoint-reconciler-type=lease",
			"--kubelet-client-certificate="+pki.f("admin.crt"), "--kubelet-client-key="+pki.f("admin.key"),
			"--kubelet-certificate-authority="+pki.f("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			"--enable-admission-plugins=DenyServiceExternalIPs")
		if o.extra, err = withPodSecurity(p, o.extra); err != nil {
			return fmt.Errorf("pod security: %w", err)
		}
	} else {
		// No pods: no token volumes, no endpoints to keep.
		apiArgs = append(apiArgs, "--endpoint-reconciler-type=none", "--disable-admission-plugins=ServiceAccount")
	}
	apiArgs = append(apiArgs, o.extra...)
	// RBAC, unless the caller brings a structured authorization configuration (the two flags
	// exclude each other).
	if !hasFlag(o.extra, "--authorization-config") {
		apiArgs = append(apiArgs, "--authorization-mode=RBAC")
	}
	apiBin := filepath.Join(o.bin, "kube-apiserver")
	api, err := start(p, "kube-apiserver", apiBin, apiArgs)
	if err != nil {
		return err
	}
	// Its graceful stop waits for long-running requests (seen: 15 s after the node's pods were
	// gone); its state is in etcd, so a few seconds are enough.
	defer func() { api.stop(5 * time.Second) }()
	recordChildren(p, etcd, api)

	client := pki.adminClient()
	if err := waitAPI(ctx, p, api, client, server); err != nil {
		return err
	}
	if err := writeKubeconfig(p.kubeconfig(), server, pki); err != nil {
		return err
	}
	controllers := "namespace-controller,garbage-collector-controller,clusterrole-aggregation-controller,resourcequota-controller," +
		"serviceaccount-controller,serviceaccount-token-controller"
	if o.node.enabled {
		// What pods on a node need: Deployments and their ReplicaSets, Services' endpoints, the
		// node's taints, the CA every pod is given, PodDisruptionBudgets, deleted pods' cleanup.
		controllers += ",deployment-controller,replicaset-controller,endpointslice-controller,endpoints-controller," +
			"node-lifecycle-controller,root-ca-certificate-publisher-controller,disruption-controller,pod-garbage-collector-controller"
	}
	kcm, err := start(p, "kube-controller-manager", filepath.Join(o.bin, "kube-controller-manager"), []string{
		"--kubeconfig=" + p.kubeconfig(),
		"--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false",
		"--controllers=" + controllers,
		"--service-account-private-key-file=" + pki.f("sa.key"),
		"--root-ca-file=" + pki.f("ca.crt"),
	})
	if err != nil {
		return err
	}
	defer kcm.stop(15 * time.Second)
	recordChildren(p, etcd, api, kcm)
	// Aggregated ClusterRoles are filled in by the controller manager: once `edit` grants
	// deployments, it is working.
	if err := waitHTTP(ctx, kcm, client, server+"/apis/rbac.authorization.k8s.io/v1/clusterroles/edit", "deployments"); err != nil {
		return fmt.Errorf("kube-controller-manager: %w\n%s", err, tail(p.f("kube-controller-manager.log"), 20))
	}
	if o.node.enabled {
		nctx, ncancel := context.WithTimeout(context.Background(), o.timeout)
		defer node.stop()
		node.containerd, err = startContainerd(nctx, p, o.bin, nn, o.node.images)
		if err == nil {
			recordChildren(p, append([]*child{etcd, api, kcm}, node.all()...)...)
			err = startNode(nctx, p, o, pki, server, nn, node)
		}
		recordChildren(p, append([]*child{etcd, api, kcm}, node.all()...)...)
		ncancel()
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	restarts := 0
	// The ready file says how many times the apiserver was restarted, so that whoever sent
	// SIGHUP can tell the new server from the old one still draining.
	writeReady := func() error {
		ready := fmt.Sprintf("kubeconfig=%s\nserver=%s\nca=%s\naudit=%s\nrestarts=%d\n",
			p.kubeconfig(), server, pki.f("ca.crt"), p.f("audit.log"), restarts)
		if o.node.enabled {
			ready += fmt.Sprintf("node=%s\nnode-ip=%s\ncontainerd=%s\n", nodeName, nn.gateway, p.f("containerd/containerd.sock"))
		}
		ready += fmt.Sprintf("pid=%d\n", os.Getpid())
		return os.WriteFile(p.readyFile(), []byte(ready), 0o644)
	}
	if err := writeReady(); err != nil {
		return err
	}
	if b, err := os.ReadFile(p.readyFile()); err == nil {
		fmt.Print(string(b))
	}

	for {
		select {
		case s := <-sigs:
			if s != syscall.SIGHUP {
				fmt.Fprintf(os.Stderr, "devcluster: %s, stopping\n", s)
				return nil
			}
			fmt.Fprintln(os.Stderr, "devcluster: SIGHUP, restarting kube-apiserver")
			// A short grace: long-running watches would otherwise hold it for a minute.
			api.stop(3 * time.Second)
			if api, err = start(p, "kube-apiserver", apiBin, apiArgs); err != nil {
				return err
			}
			recordChildren(p, append([]*child{etcd, api, kcm}, node.all()...)...)
			rctx, rcancel := context.WithTimeout(context.Background(), o.timeout)
			err = waitAPI(rctx, p, api, client, server)
			rcancel()
			if err != nil {
				return err
			}
			restarts++
			if err := writeReady(); err != nil {
				return err
			}
			fmt.Fprintln(os.Stderr, "devcluster: kube-apiserver ready again")
		case <-lifeline:
			fmt.Fprintln(os.Stderr, "devcluster: lifeline closed, stopping")
			return nil
		case err := <-etcd.done:
			return fmt.Errorf("etcd exited (%v):\n%s", err, tail(p.f("etcd.log"), 20))
		case err := <-api.done:
			return fmt.Errorf("kube-apiserver exited (%v):\n%s", err, tail(p.f("kube-apiserver.log"), 20))
		case err := <-kcm.done:
			return fmt.Errorf("kube-controller-manager exited (%v):\n%s", err, tail(p.f("kube-controller-manager.log"), 20))
		case err := <-doneOf(node.containerd):
			return fmt.Errorf("containerd exited (%v):\n%s", err, tail(p.f("containerd.log"), 20))
		case err := <-doneOf(node.kubelet):
			return fmt.Errorf("kubelet exited (%v):\n%s", err, tail(p.f("kubelet.log"), 20))
		case err := <-doneOf(node.proxy):
			return fmt.Errorf("kube-proxy exited (%v):\n%s", err, tail(p.f("kube-proxy.log"), 20))
		case err := <-doneOf(node.scheduler):
			return fmt.Errorf("kube-scheduler exited (%v):\n%s", err, tail(p.f("kube-scheduler.log"), 20))
		}
	}
}

// waitAPI waits for /readyz and for the `default` namespace, failing fast if the process dies.
func waitAPI(ctx context.Context, p paths, api *child, client *http.Client, server string) error {
	explain := func(err error) error {
		log := tail(p.f("kube-apiserver.log"), 30)
		if strings.Contains(log, "address already in use") {
			return fmt.Errorf("kube-apiserver could not bind %s: the port is in use; pick another with --port", server)
		}
		return fmt.Errorf("kube-apiserver: %w\n%s", err, log)
	}
	if err := waitHTTP(ctx, api, client, server+"/readyz", "ok"); err != nil {
		return explain(err)
	}
	if err := waitHTTP(ctx, api, client, server+"/api/v1/namespaces/default", `"name":"default"`); err != nil {
		return explain(err)
	}
	return nil
}

func waitHTTP(ctx context.Context, c *child, client *http.Client, url, want string) error {
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && bytes.Contains(b, []byte(want)) {
				return nil
			}
			last = fmt.Sprintf("%s answered %d: %.200s", url, resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("%s exited while starting (%v)", c.name, err)
		case <-ctx.Done():
			return fmt.Errorf("not ready in time; last answer: %s", last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  users: ["system:apiserver"]
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
`

// ---------------------------------------------------------------------------------------------
// down / status

func doneOf(c *child) chan error {
	if c == nil {
		return nil
	}
	return c.done
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	dir := fs.String("dir", "", "state directory")
	_ = fs.Parse(args)
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	p := paths{abs}
	pid, ok := readPid(p.pidFile())
	if !ok || !alive(pid, "devcluster") {
		killRecordedChildren(p)
		if err := leftoverNode(p.dir); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "devcluster: nothing running from %s\n", *dir)
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	// A node's teardown takes a few seconds more than the control plane's.
	for i := 0; i < 600; i++ {
		if !alive(pid, "devcluster") {
			fmt.Fprintf(os.Stderr, "devcluster: stopped (pid %d)\n", pid)
			// Its own teardown failed if its record is still there: try again, and say what is left.
			return leftoverNode(p.dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	killRecordedChildren(p)
	return errors.Join(fmt.Errorf("pid %d did not stop in 60s; killed", pid), leftoverNode(p.dir))
}

func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	dir := fs.String("dir", "", "state directory")
	_ = fs.Parse(args)
	p := paths{*dir}
	pid, ok := readPid(p.pidFile())
	if !ok || !alive(pid, "devcluster") {
		return fmt.Errorf("not running from %s", *dir)
	}
	b, err := os.ReadFile(p.readyFile())
	if err != nil {
		return fmt.Errorf("running (pid %d) but not ready yet", pid)
	}
	fmt.Print(string(b))
	return nil
}

func readPid(file string) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

// alive reports whether pid runs a program whose command line mentions name (so a recycled pid
// of an unrelated process is never signalled).
func alive(pid int, name string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return false
		}
	}
	return bytes.Contains(b, []byte(name))
}

func recordChildren(p paths, cs ...*child) {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%d %s\n", c.cmd.Process.Pid, filepath.Base(c.cmd.Path))
	}
	_ = os.WriteFile(p.childFile(), []byte(b.String()), 0o644)
}

func killRecordedChildren(p paths) {
	b, err := os.ReadFile(p.childFile())
	if err != nil {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if pid, err := strconv.Atoi(f[0]); err == nil && alive(pid, f[1]) {
			fmt.Fprintf(os.Stderr, "devcluster: killing leftover %s (pid %d)\n", f[1], pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	_ = os.Remove(p.childFile())
}

// ---------------------------------------------------------------------------------------------
// ports, files

func freePort(host string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		panic(fmt.Sprintf("no free loopback port: %v", err))
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func portFree(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------------------------------
// certificates

type pki struct {
	dir                 string
	ca                  *x509.Certificate
	caKey               *ecdsa.PrivateKey
	adminCert, adminKey []byte
	caPEM               []byte
}

func (k *pki) f(name string) string { return filepath.Join(k.dir, name) }

func (k *pki) adminClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.caPEM)
	cert, err := tls.X509KeyPair(k.adminCert, k.adminKey)
	if err != nil {
		panic(err)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert},
	}}}
}

func makePKI(dir string, hosts ...string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	k := &pki{dir: dir}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	k.caKey = caKey
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "roster-dev-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if k.ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	k.caPEM = pemBlock("CERTIFICATE", caDER)
	if err := os.WriteFile(k.f("ca.crt"), k.caPEM, 0o644); err != nil {
		return nil, err
	}
	caKeyDER, _ := x509.MarshalECPrivateKey(caKey)
	if err := os.WriteFile(k.f("ca.key"), pemBlock("EC PRIVATE KEY", caKeyDER), 0o600); err != nil {
		return nil, err
	}

	issue := func(name string, tmpl *x509.Certificate) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, k.ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", keyDER)
		if err := os.WriteFile(k.f(name+".crt"), certPEM, 0o644); err != nil {
			return nil, nil, err
		}
		return certPEM, keyPEM, os.WriteFile(k.f(name+".key"), keyPEM, 0o600)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.0.0.1")}
	for _, h := range hosts {
		ips = append(ips, net.ParseIP(h))
	}
	if _, _, err := issue("serving", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, err
	}
	if k.adminCert, k.adminKey, err = issue("admin", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saDER, _ := x509.MarshalECPrivateKey(saKey)
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err := os.WriteFile(k.f("sa.key"), pemBlock("EC PRIVATE KEY", saDER), 0o600); err != nil {
		return nil, err
	}
	return k, os.WriteFile(k.f("sa.pub"), pemBlock("PUBLIC KEY", saPub), 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeKubeconfig(file, server string, k *pki) error {
	b64 := base64.StdEncoding.EncodeToString
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: roster-dev
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: roster-dev
  context:
    cluster: roster-dev
    user: admin
current-context: roster-dev
`, server, b64(k.caPEM), b64(k.adminCert), b64(k.adminKey))
	return os.WriteFile(file, []byte(cfg), 0o600)
}

// hasFlag reports whether args set the flag name (as "name=value" or "name value").
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
