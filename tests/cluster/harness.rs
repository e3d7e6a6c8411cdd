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
use std::sync::{Mutex, OnceLock};

use kube::config::{KubeConfigOptions, Kubeconfig};

pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub audit_log: PathBuf,
    // Kept open for the life of the process: closing it stops the control plane.
    _lifeline: Mutex<(Child, ChildStdin)>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared control plane with roster's CRDs installed and Established.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let c = Cluster::start(&[]);
        c.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", "crds/roster.dev.yaml"]);
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/organizations.roster.dev",
            "crd/projects.roster.dev",
            "crd/memberships.roster.dev",
        ]);
        c
    })
}

impl Cluster {
    fn start(extra_apiserver_flags: &[&str]) -> Cluster {
        let build = Command::new(root().join("tests/control-plane/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("cannot run tests/control-plane/build.sh");
        assert!(build.status.success(), "tests/control-plane/build.sh failed (see its output above)");
        let bin = PathBuf::from(String::from_utf8_lossy(&build.stdout).trim().lines().last().unwrap_or(""));

        let runs = root().join("target/cluster-test");
        clear_finished_runs(&runs);
        let dir = runs.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("create test state dir");

        let mut child = Command::new(bin.join("devcluster"))
            .arg("up")
            .arg("--lifeline")
            .arg("--dir")
            .arg(&dir)
            .arg("--bin")
            .arg(&bin)
            .arg("--")
            .args(extra_apiserver_flags)
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
                panic!("control plane did not come up; logs are in {}", dir.display())
            })
        };
        Cluster {
            kubeconfig: PathBuf::from(get("kubeconfig")),
            server: get("server"),
            audit_log: PathBuf::from(get("audit")),
            dir,
            bin,
            _lifeline: Mutex::new((child, stdin)),
        }
    }

    /// A client with the admin identity (group system:masters).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
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
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write kubectl stdin");
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

    /// Creates a fresh namespace named `<prefix>-<n>` and returns its name.
    pub fn namespace(&self, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.kubectl_ok(&["create", "namespace", &name]);
        name
    }
}

/// Removes state directories of earlier runs whose launcher has exited (it deletes its pid file).
fn clear_finished_runs(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else { return };
    for entry in entries.flatten() {
        if !entry.path().join("devcluster.pid").exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
