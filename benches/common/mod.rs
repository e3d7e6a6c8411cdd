//! What the cluster benchmarks share: a real kube-apiserver + etcd (devcluster, audit log on),
//! roster's CRDs on it, `roster run` as a process, and a process's memory.
#![allow(dead_code)] // each benchmark uses its part

pub mod svg;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use roster::api::{Membership, Organization, Project};
use serde_json::Value;

pub struct ControlPlane {
    _lifeline: Option<std::process::ChildStdin>,
    _child: Child,
    pub kubeconfig: PathBuf,
    pub audit: PathBuf,
    pub bin: PathBuf,
    /// devcluster's own process; etcd, kube-apiserver and kube-controller-manager are its
    /// children.
    pub pid: u32,
}

/// Runs a build script of the repository (its messages to the terminal) and returns the
/// directory it prints last: where the cached binaries are.
pub fn built_by(root: &Path, script: &str) -> PathBuf {
    let out = Command::new(root.join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(out.status.success(), "{script} failed ({})", out.status);
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or(""),
    )
}

pub fn start_control_plane(root: &Path, name: &str) -> ControlPlane {
    let bin = built_by(root, "tests/control-plane/build.sh");
    let dir = root.join(format!(
        "target/bench-cluster/{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = Command::new(bin.join("devcluster"))
        .args(["up", "--lifeline", "--dir"])
        .arg(&dir)
        .arg("--bin")
        .arg(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("devcluster");
    let lifeline = child.stdin.take();
    let (mut kubeconfig, mut audit, mut pid) = (None, None, 0);
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("line");
        if let Some(k) = line.strip_prefix("kubeconfig=") {
            kubeconfig = Some(PathBuf::from(k));
        }
        if let Some(a) = line.strip_prefix("audit=") {
            audit = Some(PathBuf::from(a));
        }
        if let Some(p) = line.strip_prefix("pid=") {
            pid = p.trim().parse().unwrap_or(0);
            break;
        }
    }
    ControlPlane {
        _lifeline: lifeline,
        _child: child,
        kubeconfig: kubeconfig.expect("the control plane did not start"),
        audit: audit.expect("audit log"),
        bin,
        pid,
    }
}

pub fn kubectl(cp: &ControlPlane, args: &[&str]) {
    let out = Command::new(cp.bin.join("kubectl"))
        .args(args)
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Roster {
    pub child: Child,
    pub metrics: String,
}

/// `roster run` as a process (controller and webhook; identity off), with `extra` flags; waits
/// until it is ready.
pub fn start_roster(cp: &ControlPlane, root: &Path, log: &Path, extra: &[&str]) -> Roster {
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").to_string()
    };
    let mut cmd = match std::env::var_os("ROSTER_BENCH_WRAP") {
        Some(w) => {
            let mut c = Command::new(w);
            c.arg(env!("CARGO_BIN_EXE_roster"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_roster")),
    };
    let child = cmd
        .args([
            "run",
            "--lifeline",
            "--namespace",
            "roster-system",
            "--metrics-addr",
            &metrics,
        ])
        .args(extra)
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("RUST_LOG", "warn")
        // As the image runs it (scripts/oci-archive.py says why).
        .env("MIMALLOC_PURGE_DELAY", "0")
        .envs(std::env::var_os("ROSTER_BENCH_PRELOAD").map(|p| ("LD_PRELOAD", p)))
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("roster");
    let r = Roster { child, metrics };
    let start = Instant::now();
    while !get(&r.metrics, "/readyz").starts_with("HTTP/1.1 200") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "roster did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    r
}

pub fn get(addr: &str, path: &str) -> String {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Two fields of /proc/<pid>/status, in MiB (0 when absent).
fn status_mib(pid: u32, fields: [&str; 2]) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mib = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (mib(fields[0]), mib(fields[1]))
}

/// CPU time (user and system) a process has used, in seconds (0 when unreadable).
pub fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = cpu_split(pid);
    user + system
}

/// CPU time a process has used in user space and in the kernel, in seconds (0 when
/// unreadable). The clock tick is read from `getconf CLK_TCK`, 100 on Linux unless it answers
/// otherwise.
pub fn cpu_split(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| {
        after
            .split_whitespace()
            .nth(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let tick = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (field(11) / tick, field(12) / tick)
}

/// CPU time the control plane's processes (devcluster's children) have used, in seconds.
pub fn control_plane_cpu_seconds(cp: &ControlPlane) -> f64 {
    let parent = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1).map(str::to_owned))
    };
    let ours = cp.pid.to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| parent(pid).as_deref() == Some(ours.as_str()))
        .filter_map(|pid| pid.parse().ok())
        .map(cpu_seconds)
        .sum()
}

/// Resident and peak memory of a process, in MiB.
pub fn rss(pid: u32) -> (f64, f64) {
    status_mib(pid, ["VmRSS", "VmHWM"])
}

/// Of a process's resident memory, in MiB: anonymous (heap, stacks) and file-backed (the binary
/// and libraries mapped in).
pub fn rss_parts(pid: u32) -> (f64, f64) {
    status_mib(pid, ["RssAnon", "RssFile"])
}

/// roster's CRDs and ClusterRoles, established, and roster's namespace.
pub fn install_roster_crds(cp: &ControlPlane) {
    kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "-f",
            "crds/roster.dev.yaml",
            "-f",
            "config/clusterroles.yaml",
        ],
    );
    kubectl(
        cp,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/organizations.roster.dev",
            "crd/projects.roster.dev",
            "crd/memberships.roster.dev",
        ],
    );
    kubectl(cp, &["create", "namespace", "roster-system"]);
}

/// A client of the control plane as its administrator.
pub async fn client(cp: &ControlPlane) -> Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&cp.kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    Client::try_from(config).expect("client")
}

/// The documents of a multi-document YAML stream.
pub fn docs(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("yaml"))
        .collect()
}

/// Creates every object, namespaces and Organizations first, `in_flight` at a time.
pub async fn create_all(client: &Client, docs: &[Value], in_flight: usize) {
    let rank = |d: &Value| match d["kind"].as_str() {
        Some("Namespace") => 0,
        Some("Organization") => 1,
        _ => 2,
    };
    for stage in 0..3 {
        futures::stream::iter(docs.iter().filter(|d| rank(d) == stage))
            .map(|d| {
                let client = client.clone();
                async move {
                    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
                    let pp = PostParams::default();
                    let r = match d["kind"].as_str().unwrap_or_default() {
                        "Namespace" => Api::<Namespace>::all(client)
                            .create(&pp, &serde_json::from_value(d.clone()).expect("ns"))
                            .await
                            .map(drop),
                        "Organization" => Api::<Organization>::namespaced(client, ns)
                            .create(&pp, &serde_json::from_value(d.clone()).expect("org"))
                            .await
                            .map(drop),
                        "Project" => Api::<Project>::namespaced(client, ns)
                            .create(&pp, &serde_json::from_value(d.clone()).expect("project"))
                            .await
                            .map(drop),
                        _ => Api::<Membership>::namespaced(client, ns)
                            .create(&pp, &serde_json::from_value(d.clone()).expect("membership"))
                            .await
                            .map(drop),
                    };
                    r.map_err(|e| e.to_string())
                }
            })
            .buffer_unordered(in_flight)
            .try_collect::<Vec<()>>()
            .await
            .expect("create");
    }
}

/// One completed write (create, update, patch, delete) in the API server's audit log.
pub struct AuditWrite {
    pub verb: String,
    /// The resource, with `/subresource` if any (`rolebindings`, `tenants/status`).
    pub resource: String,
    /// The object's namespace, or its name if it has none (a namespace, a cluster-scoped object).
    pub namespace: String,
    pub at: Option<Timestamp>,
}

/// The completed writes of the clients whose user agent starts with `agent` (`roster/`), from
/// the API server's audit log.
pub fn audit_writes(audit: &Path, agent: &str) -> Vec<AuditWrite> {
    // The API server rotates its audit log at 100 MB: every `audit*.log` beside it is read.
    let dir = audit.parent().expect("audit dir");
    let mut text = String::new();
    for e in std::fs::read_dir(dir).expect("audit dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("audit") && name.ends_with(".log") {
            text.push_str(&std::fs::read_to_string(e.path()).expect("read the audit log"));
        }
    }
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| {
            let ua = e["userAgent"].as_str().unwrap_or("");
            let verb = e["verb"].as_str().unwrap_or("");
            if !ua.starts_with(agent)
                || !matches!(verb, "create" | "update" | "patch" | "delete")
                || e["stage"] != "ResponseComplete"
            {
                return None;
            }
            let o = &e["objectRef"];
            let sub = o["subresource"]
                .as_str()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            Some(AuditWrite {
                verb: verb.to_string(),
                resource: format!("{}{sub}", o["resource"].as_str().unwrap_or("?")),
                namespace: o["namespace"]
                    .as_str()
                    .or(o["name"].as_str())
                    .unwrap_or("")
                    .to_string(),
                at: e["stageTimestamp"].as_str().and_then(|t| t.parse().ok()),
            })
        })
        .collect()
}

/// Writes counted by `verb resource`.
pub fn by_kind(writes: impl IntoIterator<Item = AuditWrite>) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for w in writes {
        *by.entry(format!("{} {}", w.verb, w.resource)).or_insert(0) += 1;
    }
    by
}
