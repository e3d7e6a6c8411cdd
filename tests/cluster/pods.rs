//! A stand-in for a node, until the test cluster has one: the chart's pods run as processes,
//! and a TCP proxy per Service stands in for kube-proxy.
//!
//! A pod runs the container's arguments and environment exactly as the Deployment in the API
//! server says (downward API fields, Secret references), its ConfigMap volumes as files, with a
//! token of its ServiceAccount from TokenRequest — so RBAC and flags are the chart's, not the
//! test's. It changes only what a shared host forces: listen addresses (`0.0.0.0:PORT` becomes
//! `<the cluster's loopback address>:<free port>`, so two replicas fit on one host), mount paths
//! (under the pod's own directory), and `--lifeline` (pods die with the test process).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Cluster, free_addr};

/// A Service: connections to `addr` go to one of the backends that accepts (round robin).
pub struct Service {
    state: Arc<Mutex<Endpoints>>,
}

#[derive(Default)]
struct Endpoints {
    backends: Vec<String>,
    /// Open connections by backend, to cut when it leaves (see `set`).
    open: Vec<(String, TcpStream)>,
}

impl Service {
    pub fn listen(addr: &str) -> Service {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let state = Arc::new(Mutex::new(Endpoints::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            for client in listener.incoming().flatten() {
                let list = shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .backends
                    .clone();
                next = next.wrapping_add(1);
                let upstream = (0..list.len()).find_map(|i| {
                    let backend = &list[(next + i) % list.len()];
                    TcpStream::connect_timeout(&backend.parse().ok()?, Duration::from_secs(1))
                        .ok()
                        .map(|s| (backend.clone(), s))
                });
                match upstream {
                    Some((backend, upstream)) => {
                        if let Ok(handle) = upstream.try_clone() {
                            let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                            state.open.retain(|(_, s)| s.peer_addr().is_ok());
                            state.open.push((backend, handle));
                        }
                        pipe(client, upstream)
                    }
                    None => drop(client),
                }
            }
        });
        Service { state }
    }

    /// The pods' addresses this Service sends new connections to (the endpoints); open
    /// connections stay, as with kube-proxy.
    pub fn set(&self, backends: Vec<String>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.open.retain(|(_, s)| s.peer_addr().is_ok());
        state.backends = backends;
    }

    /// Cuts the open connections to `backend`: its pod is gone from the network (a partition),
    /// and its clients see their connections break and reconnect elsewhere.
    pub fn cut(&self, backend: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (b, conn) in &state.open {
            if b == backend {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
        state.open.retain(|(b, _)| b != backend);
    }
}

/// Copies both ways; when either side ends (a pod that died resets its connections), both
/// connections are closed, as the client would see with a real endpoint.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one_way = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        })
    };
    one_way(a, b);
    one_way(b2, a2);
}

/// One replica of the Deployment, as a process.
pub struct Pod {
    pub name: String,
    child: Child,
    _stdin: ChildStdin,
    /// Container port name → the address it listens on here.
    pub ports: HashMap<String, String>,
    pub dir: PathBuf,
    /// The container's preStop sleep.
    pre_stop: Duration,
}

impl Pod {
    pub fn addr(&self, port: &str) -> &str {
        self.ports
            .get(port)
            .unwrap_or_else(|| panic!("{} has no port {port}", self.name))
    }

    /// Ready by its readiness probe; panics with the pod's log when the process has exited.
    pub fn ready(&mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("pod {} exited ({status}): {}", self.name, self.log());
        }
        get(self.addr("metrics"), "/readyz").is_some_and(|b| b == "ok")
    }

    /// As the kubelet stops a pod: the preStop sleep, SIGTERM, and SIGKILL after the grace
    /// period.
    pub fn stop(mut self) {
        std::thread::sleep(self.pre_stop);
        for signal in ["-CONT", "-TERM"] {
            let _ = Command::new("kill")
                .args([signal, &self.child.id().to_string()])
                .status();
        }
        if self.exited(Duration::from_secs(30)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// How the process exited, once it has, within `within`.
    pub fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// SIGKILL: a crash, or a node gone.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("roster.log")).unwrap_or_default()
    }
}

/// A plain HTTP GET; None when nothing answers.
pub fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The Deployment `name` in `ns` as the API server has it.
pub fn deployment(c: &Cluster, ns: &str, name: &str) -> Value {
    let json = c.kubectl_ok(&["get", "deployment", name, "-n", ns, "-o", "json"]);
    serde_json::from_str(&json).expect("Deployment JSON")
}

/// Runs pod `name` of `deployment` (in `ns`) as a process.
pub fn run(c: &Cluster, ns: &str, deployment: &Value, name: &str) -> Pod {
    let spec = &deployment["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let dir = c.dir.join("pods").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("pod dir");

    // The ServiceAccount's token, as the kubelet projects it.
    let account = spec["serviceAccountName"].as_str().unwrap_or("default");
    let token = c.kubectl_ok(&["create", "token", account, "-n", ns, "--duration=2h"]);
    let kubeconfig = c.member_kubeconfig(
        &format!("pod-{name}"),
        &format!("    token: {}", token.trim()),
    );

    let mut rewrites: Vec<(String, String)> = Vec::new();
    let mut ports = HashMap::new();
    for port in container["ports"].as_array().into_iter().flatten() {
        let number = port["containerPort"].as_u64().expect("containerPort");
        let here = free_addr(&c.host);
        rewrites.push((format!("0.0.0.0:{number}"), here.clone()));
        ports.insert(port["name"].as_str().expect("port name").to_string(), here);
    }
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let path = mount["mountPath"].as_str().expect("mountPath");
        let volume = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == mount["name"])
            .expect("the mount's volume");
        let local = dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&local).expect("mount dir");
        let config_map = volume["configMap"]["name"]
            .as_str()
            .expect("only ConfigMap volumes are supported here");
        let json = c.kubectl_ok(&["get", "configmap", config_map, "-n", ns, "-o", "json"]);
        let cm: Value = serde_json::from_str(&json).expect("ConfigMap JSON");
        for (key, value) in cm["data"].as_object().into_iter().flatten() {
            std::fs::write(local.join(key), value.as_str().unwrap_or_default())
                .expect("write a mounted file");
        }
        rewrites.push((path.to_string(), local.display().to_string()));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name_ = var["name"].as_str().expect("env name").to_string();
        let value = if let Some(v) = var["value"].as_str() {
            v.to_string()
        } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.namespace" => ns.to_string(),
                "metadata.name" => name.to_string(),
                other => panic!("downward API field {other} is not supported here"),
            }
        } else if let Some(secret) = var["valueFrom"]["secretKeyRef"]["name"].as_str() {
            let key = var["valueFrom"]["secretKeyRef"]["key"]
                .as_str()
                .expect("key");
            let b64 = c.kubectl_ok(&[
                "get",
                "secret",
                secret,
                "-n",
                ns,
                "-o",
                &format!("jsonpath={{.data.{key}}}"),
            ]);
            use base64::Engine;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .expect("base64"),
            )
            .expect("utf8")
        } else {
            panic!("env {name_}: unsupported source {var}")
        };
        env.push((name_, value));
    }
    let rewrite = |arg: &str| {
        rewrites
            .iter()
            .fold(arg.to_string(), |a, (from, to)| a.replace(from, to))
    };
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| rewrite(a.as_str().expect("arg")))
        .collect();
    assert!(
        container["command"].is_null(),
        "the image's entrypoint (/roster) runs; the chart sets only args"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(&args)
        .arg("--lifeline")
        .env_remove("RUST_LOG")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .envs(env)
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(dir.join("stdout.log")).expect("stdout"))
        .stderr(std::fs::File::create(dir.join("roster.log")).expect("log"))
        .spawn()
        .expect("start the pod's process");
    let stdin = child.stdin.take().expect("stdin");
    Pod {
        name: name.to_string(),
        child,
        _stdin: stdin,
        ports,
        dir,
        pre_stop: Duration::from_secs(
            container["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .unwrap_or(0),
        ),
    }
}
