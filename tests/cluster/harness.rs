//! One real control plane (etcd + kube-apiserver, built by tests/control-plane/build.sh) per test
//! binary, started on first use; every test works in namespaces of its own.
//!
//! The launcher runs with `--lifeline`: it holds the read end of a pipe whose write end lives in
//! this process, so however the test binary ends (success, panic, SIGKILL) the pipe closes and
//! the control plane stops. No orphans, no `Drop` on a static needed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

pub struct Cluster {
    /// This cluster's own loopback address: etcd, the API server and roster listen there.
    pub host: String,
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub audit_log: PathBuf,
    // Kept open for the life of the process: closing them stops the control plane and roster.
    lifeline: Mutex<(Child, ChildStdin)>,
    roster: Mutex<Option<(Child, ChildStdin)>>,
    /// Where roster serves /metrics, /healthz and /readyz.
    pub metrics_addr: String,
    /// Where roster serves the identity pages and login API (HTTPS).
    pub identity_addr: String,
    /// The identity server's public URL (the prefix of invitation links).
    pub identity_url: String,
    /// The name to verify the identity server's certificate against when `identity_addr` is an
    /// address that is not in it (a Service's ClusterIP).
    pub identity_tls_name: Option<String>,
    /// Where roster serves the API server's token and authorization webhooks (HTTPS with the
    /// API server's client certificate only).
    pub authn_addr: String,
    /// Where roster serves the admission webhook (HTTPS with the API server's client
    /// certificate only).
    pub webhook_addr: String,
    /// A kubeconfig with roster's own identity (its ServiceAccount's token), distinct from the
    /// platform admin's that the tests use.
    pub roster_kubeconfig: PathBuf,
    /// The identity server's certificate files (ca.crt, tls.crt, tls.key).
    pub identity_certs: PathBuf,
    /// API server URL and CA (for kubeconfigs of members, which carry no client certificate).
    pub server: String,
    pub server_ca_pem: String,
}

/// roster's own namespace in the tests: credentials, keys, security logs.
pub const ROSTER_NAMESPACE: &str = "roster-system";

/// Tests share the API server; the one test that restarts it takes this exclusively.
static API_SERVER: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    API_SERVER.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    API_SERVER.write().unwrap_or_else(|e| e.into_inner())
}

/// How often roster re-plans an unchanged organization in the tests.
pub const RESYNC: Duration = Duration::from_secs(2);

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared control plane with roster's CRDs installed and Established.
/// If starting it fails, every test fails with the first error instead of starting another.
pub fn cluster() -> &'static Cluster {
    let started = CLUSTER.get_or_init(|| {
        std::panic::catch_unwind(start_cluster).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown error".into())
        })
    });
    match started {
        Ok(c) => c,
        Err(e) => panic!("the test control plane did not start: {e}"),
    }
}

fn start_cluster() -> Cluster {
    {
        let c = Cluster::start("", &[]);
        c.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "crds/roster.dev.yaml",
            "-f",
            "config/clusterroles.yaml",
        ]);
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/organizations.roster.dev",
            "crd/projects.roster.dev",
            "crd/memberships.roster.dev",
        ]);
        c.kubectl_ok(&["create", "namespace", ROSTER_NAMESPACE]);
        c.install_chart_rbac();
        c.write_roster_kubeconfig();
        c.start_roster();
        c
    }
}

/// Where roster runs against a control plane.
pub enum Placement {
    /// Beside the tests, as processes on the cluster's loopback address.
    Host,
    /// In pods on a real node (devcluster --node) with these image archives imported, reached
    /// through the chart's Services: the API server's token webhook at a fixed ClusterIP,
    /// the admission webhook by Service name.
    Node { images: Vec<PathBuf> },
}

/// The ClusterIP the node tier gives the chart's roster-authn Service (identity.authnClusterIP):
/// the API server's webhook kubeconfig names an address before the Service exists.
pub const NODE_AUTHN_IP: &str = "10.0.0.53";

impl Cluster {
    /// A control plane in `target/cluster-test/<pid><name>`, its API server configured to trust
    /// roster (token and authorization webhooks, client certificate for the admission webhook)
    /// at the addresses this picks; roster itself is started by the caller.
    pub fn start(name: &str, extra_apiserver_flags: &[&str]) -> Cluster {
        Cluster::start_on(name, extra_apiserver_flags, &Placement::Host)
    }

    /// `start`, with roster placed as `placement` says.
    pub fn start_on(name: &str, extra_apiserver_flags: &[&str], placement: &Placement) -> Cluster {
        let runs = root().join("target/cluster-test");
        clear_finished_runs(&runs);
        let dir = runs.join(format!("{}{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create test state dir");
        // The API server trusts roster's identity server for tokens (TokenReview), so its
        // certificate must exist before the API server starts: roster writes it first.
        let host = own_loopback();
        let on_node = matches!(placement, Placement::Node { .. });
        let (identity_addr, authn_addr, webhook_addr) = if on_node {
            // The identity Service's address is known once it exists (set by the test).
            (
                String::new(),
                format!("{NODE_AUTHN_IP}:443"),
                format!("roster-webhook.{ROSTER_NAMESPACE}.svc:443"),
            )
        } else {
            // The API server presents its client certificate to the admission webhook too, so
            // the webhook's address is fixed before the API server starts.
            (free_addr(&host), free_addr(&host), free_addr(&host))
        };
        let identity_certs = dir.join("identity");
        // roster writes the certificate and the API server's webhook configuration files.
        let mut certificate = Command::new(env!("CARGO_BIN_EXE_roster"));
        certificate
            .args(["certificate", "--name", &host, "--out-dir"])
            .arg(&identity_certs)
            .args(["--authn-url", &format!("https://{authn_addr}")])
            .args(["--webhook-host", &webhook_addr])
            // The chart's serving Secret is made from this CA (tests/cluster/in_cluster.rs).
            .arg("--keep-ca-key");
        if on_node {
            certificate.args([
                "--authn-server-name",
                &format!("roster-authn.{ROSTER_NAMESPACE}.svc"),
            ]);
        }
        let made = certificate.status().expect("run roster certificate");
        assert!(made.success(), "roster certificate failed");
        let authn = identity_certs.join("authenticate-webhook.kubeconfig");
        let authz = identity_certs.join("authorization.yaml");
        let mut flags: Vec<String> = vec![
            format!(
                "--authentication-token-webhook-config-file={}",
                authn.display()
            ),
            "--authentication-token-webhook-version=v1".into(),
            // No cache: a disabled member's next request is refused (production keeps a short one).
            "--authentication-token-webhook-cache-ttl=0s".into(),
            format!("--authorization-config={}", authz.display()),
            format!(
                "--admission-control-config-file={}",
                identity_certs.join("admission.yaml").display()
            ),
        ];
        flags.extend(extra_apiserver_flags.iter().map(|f| f.to_string()));
        let bin = control_plane_bin();

        let mut child = Command::new(bin.join("devcluster"))
            .arg("up")
            .arg("--lifeline")
            .arg("--dir")
            .arg(&dir)
            .arg("--bin")
            .arg(&bin)
            .args(["--host", &host])
            .args(node_args(placement))
            .arg("--")
            .args(&flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start devcluster");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut ready = std::collections::HashMap::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read devcluster output");
            if let Some((k, v)) = line.split_once('=') {
                ready.insert(k.to_string(), v.to_string());
                if k == "pid" {
                    break;
                }
            }
        }
        let get = |k: &str| {
            ready.get(k).cloned().unwrap_or_else(|| {
                panic!(
                    "control plane did not come up; logs are in {}",
                    dir.display()
                )
            })
        };
        let kubeconfig = Kubeconfig::read_from(get("kubeconfig")).expect("read kubeconfig");
        let cluster = kubeconfig
            .clusters
            .first()
            .and_then(|c| c.cluster.clone())
            .expect("a cluster in the kubeconfig");
        let ca_data = cluster.certificate_authority_data.clone().expect("CA data");
        use base64::Engine;
        let server_ca_pem = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(ca_data)
                .expect("CA base64"),
        )
        .expect("CA text");
        Cluster {
            server: cluster.server.clone().expect("server"),
            server_ca_pem,
            identity_url: format!("https://{identity_addr}"),
            identity_tls_name: None,
            identity_addr,
            authn_addr,
            webhook_addr,
            roster_kubeconfig: dir.join("roster.kubeconfig"),
            identity_certs,
            kubeconfig: PathBuf::from(get("kubeconfig")),
            audit_log: PathBuf::from(get("audit")),
            dir,
            bin,
            lifeline: Mutex::new((child, stdin)),
            roster: Mutex::new(None),
            metrics_addr: free_addr(&host),
            host,
        }
    }

    /// Namespace `ns` with the Helm chart's serving Secret `name` made from the CA the API server
    /// was started trusting (`roster certificate --keep-ca-key`): roster issues from it.
    pub fn serving_secret(&self, ns: &str, name: &str) {
        self.kubectl_ok(&["create", "namespace", ns]);
        let file = |f: &str| format!("--from-file={f}={}", self.identity_certs.join(f).display());
        self.kubectl_ok(&[
            "create",
            "secret",
            "generic",
            name,
            "-n",
            ns,
            &file("ca.crt"),
            &file("ca.key"),
        ]);
    }

    /// Stops the control plane (and its node) and returns how the launcher exited: with a node,
    /// success means its teardown found the host as it had recorded it.
    pub fn shutdown(self) -> std::process::ExitStatus {
        let (mut child, stdin) = self
            .lifeline
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        drop(stdin);
        child.wait().expect("wait for devcluster")
    }

    /// The Helm chart's ServiceAccount, ClusterRole, Role and webhook configuration, rendered
    /// by the real helm: every cluster test runs roster with exactly the rights the chart
    /// gives it, so a verb the chart lacks fails a test.
    fn install_chart_rbac(&self) {
        let rendered = helm(&[
            "template",
            "roster",
            "charts/roster",
            "--namespace",
            ROSTER_NAMESPACE,
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
            "--show-only",
            "templates/webhook.yaml",
            "--set",
            &format!("webhook.url=https://{}/validate", self.webhook_addr),
            "--set-file",
            &format!(
                "apiServerClientCA={}",
                self.identity_certs.join("client-ca.crt").display()
            ),
        ]);
        let out = self.kubectl_stdin(&["apply", "-f", "-"], Some(&rendered));
        assert!(
            out.status.success(),
            "applying the chart's RBAC failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// roster runs as a ServiceAccount of its own (as in a cluster), not as the platform admin
    /// the tests act as: the webhook tells the two apart (only roster sets the labels it
    /// trusts). Its rights are the chart's (install_chart_rbac).
    fn write_roster_kubeconfig(&self) {
        let token = self.kubectl_ok(&[
            "create",
            "token",
            "roster",
            "-n",
            ROSTER_NAMESPACE,
            "--duration=24h",
        ]);
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.server_ca_pem);
        std::fs::write(
            &self.roster_kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: roster\n  user:\n    token: {}\ncontexts:\n- name: roster\n  context: {{cluster: test, user: roster}}\ncurrent-context: roster\n",
                self.server,
                token.trim()
            ),
        )
        .expect("write roster's kubeconfig");
    }

    /// Runs the real `roster run` (controller and webhook) against this control plane, logging
    /// to `<dir>/roster.log`, and waits until the API server calls the webhook.
    fn start_roster(&self) {
        let log = std::fs::File::create(self.dir.join("roster.log")).expect("roster log");
        // What members' downloaded kubeconfigs point at: this API server and its CA.
        let server_ca = self.dir.join("server-ca.crt");
        std::fs::write(&server_ca, &self.server_ca_pem).expect("write the server CA");
        let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args([
                "run",
                "--lifeline",
                "--resync",
                &format!("{}s", RESYNC.as_secs()),
            ])
            .args(["--webhook-addr", &self.webhook_addr])
            .args(["--webhook-configuration", "ca-bundle"])
            .arg("--webhook-client-ca")
            .arg(self.identity_certs.join("client-ca.crt"))
            .args(["--metrics-addr", &self.metrics_addr])
            .args(["--namespace", ROSTER_NAMESPACE])
            .args(["--identity-addr", &self.identity_addr])
            .arg("--identity-cert")
            .arg(self.identity_certs.join("tls.crt"))
            .arg("--identity-key")
            .arg(self.identity_certs.join("tls.key"))
            .args(["--authn-addr", &self.authn_addr])
            .arg("--authn-client-ca")
            .arg(self.identity_certs.join("client-ca.crt"))
            .args(["--cluster-server", &self.server])
            .arg("--cluster-ca-file")
            .arg(&server_ca)
            .arg("--identity-ca-file")
            .arg(self.identity_certs.join("ca.crt"))
            // Cheap hashes: the tests are about behaviour, not hashing cost.
            .args(["--argon2-memory-kib", "1024", "--argon2-iterations", "1"])
            // Every test calls from 127.0.0.1: no per-address limit here (the router tests
            // show it); the per-member one stays on.
            .args(["--login-rate-per-source", "0"])
            .env("KUBECONFIG", &self.roster_kubeconfig)
            .env("RUST_LOG", "info,roster=debug,kube_runtime=warn")
            .stdin(Stdio::piped())
            .stdout(
                std::fs::File::create(self.dir.join("security.jsonl")).expect("security log file"),
            )
            .stderr(log)
            .spawn()
            .expect("start roster");
        let stdin = child.stdin.take().expect("piped stdin");
        *self.roster.lock().unwrap_or_else(|e| e.into_inner()) = Some((child, stdin));
        // The API server picks up a new webhook configuration asynchronously: wait until an
        // object only the webhook refuses is refused.
        let probe = "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata: {name: probe, namespace: default}\nspec: {owner: a@b.example}\n";
        wait_for("the webhook to answer", Duration::from_secs(60), || {
            let out = self.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(probe));
            String::from_utf8_lossy(&out.stderr)
                .contains("named after its namespace")
                .then_some(())
        });
    }

    /// Restarts the kube-apiserver (same port, same etcd) and waits until the new one serves:
    /// the launcher counts restarts in its ready file.
    pub fn restart_apiserver(&self) {
        let restarts = || {
            let ready = std::fs::read_to_string(self.dir.join("ready")).unwrap_or_default();
            ready
                .lines()
                .find_map(|l| l.strip_prefix("restarts=")?.parse::<u32>().ok())
        };
        let before = restarts().expect("restarts= in the ready file");
        let pid = self
            .lifeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .id();
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        wait_for("the restarted API server", Duration::from_secs(120), || {
            (restarts()? > before).then_some(())
        });
    }

    /// A client with the admin identity (group system:masters).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kubeconfig");
        kube::Client::try_from(config).expect("client")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(root())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes())
                .expect("write kubectl stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and panics with its stderr unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl and returns stdout if it succeeded (for polling: absent yet is not an error).
    pub fn kubectl_try(&self, args: &[&str]) -> Option<String> {
        let out = self.kubectl(args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a fresh namespace named `<prefix>-<n>` and returns its name.
    pub fn namespace(&self, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.kubectl_ok(&["create", "namespace", &name]);
        name
    }
}

/// The helm CLI, built from the Go module pinned in tests/helm (cached like the control plane).
pub fn helm_bin() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| built("tests/helm/build.sh"))
}

/// Runs one of the Go build scripts and returns the path it prints last.
fn built(script: &str) -> PathBuf {
    let build = Command::new(root().join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        build.status.success(),
        "{script} failed (see its output above)"
    );
    PathBuf::from(
        String::from_utf8_lossy(&build.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or(""),
    )
}

/// Runs helm (in the repository root, no cluster unless `args` name one) and returns stdout,
/// panicking with its stderr when it fails.
pub fn helm(args: &[&str]) -> String {
    let out = Command::new(helm_bin())
        .args(args)
        .current_dir(root())
        .env("HELM_CACHE_HOME", root().join("target/helm/cache"))
        .env("HELM_CONFIG_HOME", root().join("target/helm/config"))
        .env("HELM_DATA_HOME", root().join("target/helm/data"))
        .stdin(Stdio::null())
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loopback address no other run uses (127.0.0.0/8 is all loopback on Linux): ports picked
/// there cannot be taken meanwhile by the ephemeral port of some connection from 127.0.0.1, the
/// address every client here connects from, nor by another test run's listeners.
pub fn own_loopback() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let pid = std::process::id();
    format!(
        "127.{}.{}.{}",
        2 + pid % 250,
        (pid / 250) % 256,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `host:port` with a port free on `host` now. The port is baked into configuration before the
/// server that binds it starts, hence a loopback address of its own (see [`own_loopback`]).
pub fn free_addr(host: &str) -> String {
    let port = std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("{host}:{port}")
}

/// A plain HTTP GET (roster's metrics port); returns the body.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// Polls `probe` every 200 ms until it returns Some, or panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The directory tests/control-plane/build.sh prints (built or found in its cache).
pub fn control_plane_bin() -> PathBuf {
    built("tests/control-plane/build.sh")
}

fn node_args(placement: &Placement) -> Vec<String> {
    match placement {
        Placement::Host => Vec::new(),
        Placement::Node { images } => std::iter::once("--node".to_string())
            .chain(
                images
                    .iter()
                    .flat_map(|i| ["--image".to_string(), i.display().to_string()]),
            )
            .collect(),
    }
}

/// Removes state directories of earlier runs whose launcher has exited (it deletes its pid file).
/// Not one whose node is still recorded as not torn down: its mounts may still be under it (the
/// next `devcluster up --node` tears it down first).
fn clear_finished_runs(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    let node_record =
        std::fs::read_to_string("/run/roster-devcluster-node.json").unwrap_or_default();
    let ours = std::process::id().to_string();
    for entry in entries.flatten() {
        // This process's other control plane may be starting (no pid file yet).
        if entry.file_name().to_string_lossy().starts_with(&ours) {
            continue;
        }
        if node_record.contains(&*entry.path().to_string_lossy()) {
            continue;
        }
        if !entry.path().join("devcluster.pid").exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// An organization in namespace `ns`: projects one (namespaceDeletion Delete) and two; alice
/// (Admin), bob (Admin, project Admin of one), carl (Member, with `carl` appended to his spec).
pub fn small_org(ns: &str, owner: &str, carl: &str) -> String {
    format!(
        r#"apiVersion: roster.dev/v1alpha1
kind: Organization
metadata: {{name: {ns}, namespace: {ns}}}
spec: {{owner: {owner}@acme.example}}
---
apiVersion: roster.dev/v1alpha1
kind: Project
metadata: {{name: one, namespace: {ns}}}
spec: {{namespaceDeletion: Delete}}
---
apiVersion: roster.dev/v1alpha1
kind: Project
metadata: {{name: two, namespace: {ns}}}
---
apiVersion: roster.dev/v1alpha1
kind: Membership
metadata: {{name: alice, namespace: {ns}}}
spec: {{email: alice@acme.example, role: Admin}}
---
apiVersion: roster.dev/v1alpha1
kind: Membership
metadata: {{name: bob, namespace: {ns}}}
spec:
  email: bob@acme.example
  role: Admin
  projects: [{{name: one, role: Admin}}]
---
apiVersion: roster.dev/v1alpha1
kind: Membership
metadata: {{name: carl, namespace: {ns}}}
spec:
  email: carl@acme.example
  role: Member
  disabled: false
{carl}
"#
    )
}

/// One HTTPS request to roster's identity server; returns status and body (status 0 when the
/// connection failed, with the error as body).
pub async fn identity_request(
    c: &Cluster,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    identity_request_at(c, &c.identity_addr, method, path, content_type, body).await
}

/// `identity_request` to one replica's address (the chart tests run two).
pub async fn identity_request_at(
    c: &Cluster,
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    use rustls_pki_types::pem::PemObject;
    let mut config = kube::Config::new(format!("https://{addr}").parse().expect("identity URL"));
    config.tls_server_name = c.identity_tls_name.clone();
    let pem = std::fs::read(c.identity_certs.join("ca.crt")).expect("identity CA");
    config.root_cert = Some(
        rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .map(|c| c.expect("CA").to_vec())
            .collect(),
    );
    let client = kube::Client::try_from(config).expect("identity client");
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("user-agent", "roster-cluster-test")
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .expect("request");
    // A server may answer 413 and close before a huge body is written: status 0, the error.
    let resp = match client.send(req).await {
        Ok(r) => r,
        Err(e) => return (0, e.to_string()),
    };
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// One HTTPS request to roster's API-server-only listener (token and authorization webhooks),
/// presenting `client` (a cert and key file pair; the API server's by default) or none.
/// Status 0 and the error when the connection or handshake fails.
pub async fn authn_request(
    c: &Cluster,
    path: &str,
    body: &str,
    client: Option<(&Path, &Path)>,
) -> (u16, String) {
    let pem = std::fs::read(c.identity_certs.join("ca.crt")).expect("identity CA");
    mtls_request(&c.authn_addr, &pem, path, body, client).await
}

/// One HTTPS POST to `addr` (server CA `ca_pem`), presenting `client` or none.
pub async fn mtls_request(
    addr: &str,
    ca_pem: &[u8],
    path: &str,
    body: &str,
    client: Option<(&Path, &Path)>,
) -> (u16, String) {
    use rustls_pki_types::pem::PemObject;
    let mut config = kube::Config::new(format!("https://{addr}").parse().expect("URL"));
    config.root_cert = Some(
        rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem)
            .map(|c| c.expect("CA").to_vec())
            .collect(),
    );
    if let Some((cert, key)) = client {
        config.auth_info.client_certificate = Some(cert.display().to_string());
        config.auth_info.client_key = Some(key.display().to_string());
    }
    let client = match kube::Client::try_from(config) {
        Ok(c) => c,
        Err(e) => return (0, e.to_string()),
    };
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .expect("request");
    let resp = match client.send(req).await {
        Ok(r) => r,
        Err(e) => return (0, e.to_string()),
    };
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The API server's client certificate and key for roster's webhooks.
pub fn apiserver_client(c: &Cluster) -> (PathBuf, PathBuf) {
    (
        c.identity_certs.join("apiserver-client.crt"),
        c.identity_certs.join("apiserver-client.key"),
    )
}

/// application/x-www-form-urlencoded.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Cluster {
    /// A kubeconfig for a member: the API server, its CA, and a token or an exec plugin, no
    /// client certificate (which would win over the token).
    pub fn member_kubeconfig(&self, name: &str, user: &str) -> PathBuf {
        use base64::Engine;
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.server_ca_pem);
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: member\n  user:\n{user}\ncontexts:\n- name: member\n  context: {{cluster: test, user: member}}\ncurrent-context: member\n",
                self.server
            ),
        )
        .expect("write member kubeconfig");
        path
    }

    /// kubectl with another kubeconfig.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(self.bin.join("kubectl"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().copied())
            .current_dir(root())
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }
}

/// The password members set in the tests.
pub const PASSWORD: &str = "correct horse battery staple 42";

/// The Secret holding the member's pending invitation link, as their status names it.
pub fn link_secret(c: &Cluster, ns: &str, member: &str) -> String {
    wait_for(
        "the invitation Secret's name",
        Duration::from_secs(30),
        || {
            c.kubectl_try(&[
                "get",
                "membership",
                member,
                "-n",
                ns,
                "-o",
                "jsonpath={.status.invitation.secretName}",
            ])
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
        },
    )
}

/// The path (and query) of the member's invitation link, from the Secret roster wrote.
pub fn link(c: &Cluster, ns: &str, member: &str) -> String {
    let b64 = wait_for("the invitation Secret", Duration::from_secs(30), || {
        c.kubectl_try(&[
            "get",
            "secret",
            &link_secret(c, ns, member),
            "-n",
            ns,
            "-o",
            "jsonpath={.data.link}",
        ])
        .filter(|s| !s.is_empty())
    });
    use base64::Engine;
    let url = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .expect("base64"),
    )
    .expect("utf8");
    let prefix = &c.identity_url;
    url.strip_prefix(prefix.as_str())
        .unwrap_or_else(|| panic!("link {url} is not on {prefix}"))
        .to_string()
}

pub fn query_value(path: &str, key: &str) -> String {
    path.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

/// Accepts `member`'s invitation with PASSWORD; returns the enrolment page (MFA is required).
pub async fn accept(c: &Cluster, ns: &str, member: &str) -> String {
    let path = link(c, ns, member);
    let (status, page) = identity_request(c, "GET", &path, "text/plain", "").await;
    assert_eq!(status, 200, "{page}");
    let fields = [
        ("org", query_value(&path, "org")),
        ("member", query_value(&path, "member")),
        ("token", query_value(&path, "token")),
    ];
    let mut f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    f.push(("password", PASSWORD));
    f.push(("confirm", PASSWORD));
    let (status, page) = identity_request(
        c,
        "POST",
        "/accept",
        "application/x-www-form-urlencoded",
        &form(&f),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page
}

/// `accept` for tests without an async runtime of their own.
pub fn accept_invitation(c: &'static Cluster, ns: &str, member: &str) {
    let (ns, member) = (ns.to_string(), member.to_string());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(accept(c, &ns, &member))
    })
    .join()
    .expect("accepting the invitation");
}

impl Cluster {
    /// Runs `roster ARGS` as the admin (KUBECONFIG) with extra environment.
    pub fn roster(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run roster")
    }
}

impl Cluster {
    /// `roster security-log ORG --json`: the organization's persisted log.
    pub fn security_log(&self, org: &str) -> String {
        let out = self.roster(
            &[
                "security-log",
                org,
                "--namespace",
                ROSTER_NAMESPACE,
                "--json",
            ],
            &[],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The persisted log once what was sent has reached it: two reads two write periods
    /// apart agree (a busy organization's log is written at most every `WRITE_EVERY`, after a
    /// second's batch and a write that may itself be slow). A fixed sleep here could read the
    /// log before a flood's entries were written, and pass for it.
    pub fn settled_security_log(&self, org: &str) -> String {
        let period = 2 * roster::identity::log_pacing::WRITE_EVERY;
        let mut before = self.security_log(org);
        let give_up = Instant::now() + 6 * period;
        loop {
            std::thread::sleep(period);
            let now = self.security_log(org);
            if now == before {
                return now;
            }
            assert!(
                Instant::now() < give_up,
                "the security log of {org} kept changing for {:?}",
                6 * period
            );
            before = now;
        }
    }
}

/// The day the dates in `examples/` were written for (see the comment atop
/// examples/acme/30-memberships.yaml). Tests apply the examples shifted by the time since, so an
/// exemption "four months from now" stays four months from now whatever the calendar says.
const EXAMPLES_WRITTEN: &str = "2026-11-23T00:00:00Z";

/// A copy of `examples/<dir>` (under target/) with every quoted RFC 3339 UTC timestamp moved
/// forward by the time elapsed since [`EXAMPLES_WRITTEN`]; returns its path for `kubectl apply -f`.
pub fn examples_as_of_now(dir: &str) -> PathBuf {
    use k8s_openapi::jiff::Timestamp;
    let written: Timestamp = EXAMPLES_WRITTEN.parse().expect("anchor");
    let shift = Timestamp::now().duration_since(written);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let out = root().join(format!(
        "target/examples-as-of-now/{}-{}-{dir}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("create the shifted examples' directory");
    let mut shifted_any = false;
    for entry in std::fs::read_dir(root().join("examples").join(dir)).expect("examples dir") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&path).expect("read an example");
        let (text, n) = shift_timestamps(&text, shift);
        shifted_any |= n > 0;
        std::fs::write(out.join(path.file_name().expect("file name")), text)
            .expect("write a shifted example");
    }
    assert!(
        dir != "acme" || shifted_any,
        "examples/acme has no dated field left to shift"
    );
    out
}

/// Moves every `"YYYY-MM-DDTHH:MM:SSZ"` in `text` by `shift`; returns the text and how many moved.
fn shift_timestamps(text: &str, shift: k8s_openapi::jiff::SignedDuration) -> (String, usize) {
    use k8s_openapi::jiff::Timestamp;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut n = 0;
    while let Some(i) = rest.find('"') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let candidate = rest
            .get(..20)
            .filter(|c| c.ends_with('Z') && c.as_bytes()[10] == b'T');
        if let Some(t) = candidate.and_then(|c| c.parse::<Timestamp>().ok()) {
            let moved = t.checked_add(shift).expect("a shifted date in range");
            out.push_str(&moved.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            rest = &rest[20..];
            n += 1;
        }
    }
    out.push_str(rest);
    (out, n)
}

#[test]
fn example_dates_shift_by_the_time_since_they_were_written() {
    use k8s_openapi::jiff::SignedDuration;
    let (text, n) = shift_timestamps(
        "a: \"2027-03-31T00:00:00Z\"\nb: \"x\"\nc: \"2026-11-23T00:00:00Z\" \"",
        SignedDuration::from_hours(48),
    );
    assert_eq!(n, 2);
    assert_eq!(
        text,
        "a: \"2027-04-02T00:00:00Z\"\nb: \"x\"\nc: \"2026-11-25T00:00:00Z\" \""
    );
}
