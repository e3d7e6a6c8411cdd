//! The node tier: a control plane with one real node (devcluster --node: containerd, kubelet,
//! kube-proxy, kube-scheduler), the image `make image` built imported into containerd, and the
//! chart installed by the real helm. Nothing stands in for anything: the pods run the image with
//! their ServiceAccount's token, the API server reaches the webhooks through the Services
//! (kube-proxy's rules), members log in through the identity Service.
//!
//! It runs where the node can (root, containerd, runc, the CNI plugins, iptables): `make test`
//! checks with `devcluster preflight`, builds the image and sets ROSTER_NODE_IMAGE, or says why
//! it skips. With ROSTER_REQUIRE_NODE=1 (CI) a skip is a failure.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{
    Cluster, NODE_AUTHN_IP, PASSWORD, Placement, ROSTER_NAMESPACE as NS, helm, wait_for,
};
use crate::in_cluster::{lease_holder, wait_converged, webhook_answers};
use crate::members::{apply, can_i, code, enrol_on_page, login_api, org_yaml, token_kubeconfig};

const RELEASE: &str = "roster";
const SERVING_SECRET: &str = "roster-serving";
/// An object only the webhook refuses (an organization must be named after its namespace).
const PROBE: &str = "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata: {name: probe, namespace: default}\nspec: {owner: a@b.example}\n";

/// The image archive to run, or None (and why, on stderr) when the tier is skipped.
fn node_image() -> Option<PathBuf> {
    let required = std::env::var("ROSTER_REQUIRE_NODE").as_deref() == Ok("1");
    match std::env::var_os("ROSTER_NODE_IMAGE") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "ROSTER_NODE_IMAGE={} is not a file",
                p.display()
            );
            Some(p)
        }
        None if required => panic!(
            "ROSTER_REQUIRE_NODE=1 but ROSTER_NODE_IMAGE is not set: run the suite with `make test`, \
             which checks that the node can run here and builds the image"
        ),
        None => {
            eprintln!(
                "node tier SKIPPED: ROSTER_NODE_IMAGE is not set (`make test` sets it where the node can run)"
            );
            None
        }
    }
}

/// What the node changes on the host, as `iptables-save`, interfaces, mount points, network
/// namespaces and sysctls show it: the same before the node starts and after its teardown.
fn host_footprint() -> Vec<String> {
    let mut out = Vec::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let save = Command::new(tool)
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        out.extend(
            String::from_utf8_lossy(&save)
                .lines()
                .filter(|l| !l.starts_with('#'))
                // Counters change with traffic; the rules are what matter.
                .map(|l| l.split(" [").next().unwrap_or(l))
                // A table and its built-in chains, empty and accepting, are what the kernel
                // shows once any program has touched the table (on a fresh machine, the first
                // ip6tables call): no rule, nothing to put back.
                .filter(|l| !empty_builtin(l))
                .map(|l| format!("{tool}: {l}")),
        );
    }
    if let Ok(links) = Command::new("ip").args(["-o", "link"]).output() {
        out.extend(
            String::from_utf8_lossy(&links.stdout)
                .lines()
                .filter_map(|l| l.split(':').nth(1))
                .map(|n| format!("link {}", n.trim())),
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    out.extend(
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|m| format!("mount {m}")),
    );
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        out.extend(
            entries
                .flatten()
                .map(|e| format!("netns {}", e.file_name().to_string_lossy())),
        );
    }
    for s in [
        "net/ipv4/ip_forward",
        "vm/overcommit_memory",
        "kernel/panic",
        "kernel/panic_on_oops",
        "net/ipv4/conf/all/route_localnet",
    ] {
        let v = std::fs::read_to_string(format!("/proc/sys/{s}")).unwrap_or_default();
        out.push(format!("sysctl {s} = {}", v.trim()));
    }
    for p in ["/var/lib/kubelet", "/var/log/containers", "/var/lib/cni"] {
        out.push(format!("{p} exists: {}", std::path::Path::new(p).exists()));
    }
    out.sort();
    out
}

/// An `iptables-save` line that holds no rule: a table's header, its COMMIT, or a built-in
/// chain's ACCEPT policy.
fn empty_builtin(line: &str) -> bool {
    const BUILTIN: [&str; 5] = ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"];
    line.starts_with('*')
        || line == "COMMIT"
        || line
            .strip_prefix(':')
            .and_then(|l| l.strip_suffix(" ACCEPT"))
            .is_some_and(|chain| BUILTIN.contains(&chain))
}

fn helm_in(c: &Cluster, args: &[&str], values: &[String]) -> String {
    let kubeconfig = c.kubeconfig.display().to_string();
    let client_ca = format!(
        "apiServerClientCA={}",
        c.identity_certs.join("client-ca.crt").display()
    );
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--namespace", NS, "--kubeconfig", &kubeconfig]);
    all.extend(["--set-file", &client_ca]);
    for v in values {
        all.extend(["--set", v]);
    }
    helm(&all)
}

/// The chart's defaults (image localhost/roster:<appVersion>, two replicas, the Services) and
/// what a cluster of this kind needs: the serving CA the API server trusts, the authn Service's
/// fixed address, cheap password hashes.
fn values() -> Vec<String> {
    [
        format!("certificates.secretName={SERVING_SECRET}"),
        "resync=2s".into(),
        "logLevel=info\\,roster=debug".into(),
        "identity.enabled=true".into(),
        format!("identity.authnClusterIP={NODE_AUTHN_IP}"),
        format!("identity.publicUrl=https://roster-identity.{NS}.svc"),
        "identity.argon2.memoryKiB=1024".into(),
        "identity.argon2.iterations=1".into(),
        "identity.rateLimit.perSource=0".into(),
    ]
    .into()
}

/// The release's pods as (name, phase, ready, node).
fn pods(c: &Cluster) -> Vec<(String, String, bool, String)> {
    let out = c.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        NS,
        "-l",
        "app.kubernetes.io/name=roster",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("pods JSON");
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .map(|p| {
                    let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                    (
                        p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                        p["status"]["phase"].as_str().unwrap_or("").to_string(),
                        ready,
                        p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rollout(c: &Cluster) {
    let out = c.kubectl(&[
        "rollout",
        "status",
        "deployment/roster",
        "-n",
        NS,
        "--timeout=180s",
    ]);
    if !out.status.success() {
        let describe = c.kubectl(&["describe", "pods", "-n", NS]);
        panic!(
            "the rollout did not finish: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&describe.stdout)
        );
    }
}

fn with_project(ns: &str, p: &str) -> String {
    format!(
        "apiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata: {{name: {p}, namespace: {ns}}}\nspec: {{namespaceDeletion: Delete}}\n"
    )
}

/// helm install on the real node → both replicas Running and Ready → the webhook, through its
/// Service, refuses a second owner → a member logs in through the identity Service and kubectl
/// as that member gets exactly the declared rights → deleting the leader's pod hands the lease
/// over within 15 s and a change right after converges → helm upgrade rolls out with every
/// webhook call answered → helm uninstall removes what it installed → the node's teardown puts
/// the host back as it was.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_node_the_chart_serves_through_services_and_the_host_is_put_back() {
    let Some(image) = node_image() else {
        return;
    };
    let before = host_footprint();
    let started = Instant::now();
    let mut c = Cluster::start_on(
        "-node",
        &[],
        &Placement::Node {
            images: vec![image],
        },
    );
    eprintln!(
        "node tier: control plane and node Ready in {:?}",
        started.elapsed()
    );
    let node = c.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(node.trim(), "roster-node");

    c.serving_secret(NS, SERVING_SECRET);
    let installing = Instant::now();
    helm_in(&c, &["install", RELEASE, "charts/roster"], &values());
    rollout(&c);
    let running = pods(&c);
    assert_eq!(running.len(), 2, "two replicas: {running:?}");
    for (name, phase, ready, node) in &running {
        assert_eq!(phase, "Running", "{name}");
        assert!(ready, "{name} is Ready");
        assert_eq!(node, "roster-node", "{name}");
    }
    let answered = (0..240).any(|_| {
        webhook_answers(&c) || {
            std::thread::sleep(Duration::from_millis(250));
            false
        }
    });
    if !answered {
        let out = c.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(PROBE));
        let logs = c.kubectl(&[
            "logs",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/name=roster",
            "--tail=20",
        ]);
        panic!(
            "the webhook does not answer through its Service: {}\n{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
    }
    eprintln!(
        "node tier: helm install → both replicas Ready and the webhook answering in {:?}",
        installing.elapsed()
    );

    // The node's network stays on this machine: from a pod's network namespace the API server
    // answers (through the `kubernetes` Service and at the bridge's address), the host's other
    // addresses and anything off the host do not.
    let netns = std::fs::read_dir("/run/netns")
        .expect("/run/netns")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a pod's network namespace");
    let api = c.server.trim_start_matches("https://").to_string();
    assert!(
        connects_from(&netns, "10.0.0.1:443"),
        "a pod reaches the API server's Service"
    );
    assert!(
        connects_from(&netns, &api),
        "a pod reaches the API server at {api}"
    );
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("listen on every address");
    let port = listener.local_addr().expect("port").port();
    for ip in host_addresses() {
        let addr = format!("{ip}:{port}");
        assert!(
            std::net::TcpStream::connect(&addr).is_ok(),
            "the host reaches {addr}"
        );
        assert!(
            !connects_from(&netns, &addr),
            "a pod reached the host's {addr}"
        );
    }
    // Red team: the same listener (bound to every address) at the bridge's address: a pod
    // reaches "that address" for the API server, but must not reach every other service of the
    // host that listens on 0.0.0.0 through it.
    // (Collected, asserted after the Developer's checks below, so that one run shows all.)
    let mut red_team_holes: Vec<String> = Vec::new();
    if connects_from(&netns, &format!("10.89.0.1:{port}")) {
        red_team_holes.push(format!(
            "a pod reached a host service listening on 0.0.0.0:{port} through the bridge's address"
        ));
    }
    if let Some(gw) = default_gateway() {
        assert!(
            !connects_from(&netns, &format!("{gw}:443")),
            "a pod reached {gw} off the host"
        );
    }
    drop(listener);

    // A pod cannot stand in for the API server: roster's admission webhook and its token and
    // authorization webhooks, by Service or by pod address, refuse a client without the API
    // server's certificate; the identity Service answers anyone (it is the members' front door).
    let svc = |name: &str| {
        let ip = c.kubectl_ok(&[
            "get",
            "service",
            name,
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ]);
        format!("{}:443", ip.trim())
    };
    let pod_ip = c.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        NS,
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    for (addr, path) in [
        (svc("roster-webhook"), "/validate"),
        (svc("roster-authn"), "/authenticate"),
        (svc("roster-authn"), "/authorize"),
        (format!("{}:8443", pod_ip.trim()), "/validate"),
        (format!("{}:8445", pod_ip.trim()), "/authenticate"),
    ] {
        let answer = https_post_from(&netns, &addr, path);
        // No HTTP answer is what matters (a refused handshake, or a Service connection that
        // times out under load); the identity Service below shows the path itself works.
        assert!(
            !answer.starts_with("HTTP"),
            "{addr}{path} answered a pod: {answer}"
        );
    }
    let answer = https_post_from(&netns, &svc("roster-identity"), "/api/v1/login");
    assert!(
        answer.starts_with("HTTP 4"),
        "the identity Service answers pods: {answer}"
    );

    // The identity server as members reach it: its Service, verified by its Service name.
    let ip = c.kubectl_ok(&[
        "get",
        "service",
        "roster-identity",
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    c.identity_addr = format!("{}:443", ip.trim());
    c.identity_tls_name = Some(format!("roster-identity.{NS}.svc"));
    c.identity_url = format!("https://roster-identity.{NS}.svc");

    let ns = "nodeorg";
    let other = "nodeother";
    for n in [ns, other] {
        c.kubectl_ok(&["create", "namespace", n]);
    }
    apply(&c, &org_yaml(ns, "olga", ""));
    apply(
        &c,
        &format!(
            "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {other}, namespace: {other}}}\nspec: {{owner: otto@other.example}}\n"
        ),
    );
    wait_converged(&c, ns, "one", Duration::from_secs(60));

    // A second owner, refused by the webhook through its Service: dave has not accepted his
    // invitation, so the organization cannot be given to him.
    let out = c.kubectl(&[
        "patch",
        "organization",
        ns,
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"owner":"dave@acme.example"}}"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second owner was let through");
    assert!(
        err.contains("validate.roster.dev") && err.contains("cannot become owner"),
        "{err}"
    );

    // carl (Admin) accepts, enrols, logs in through the identity Service; kubectl with his
    // token (the API server asks roster's token and authorization webhooks through the authn
    // Service) has exactly an Admin's rights in his organization and none elsewhere.
    let page = crate::harness::accept(&c, ns, "carl").await;
    let (seed, enrolled) = enrol_on_page(&c, ns, "carl", &page).await;
    crate::members::wait_step(enrolled + 1);
    let (status, body) = login_api(
        &c,
        ns,
        "carl@acme.example",
        PASSWORD,
        Some(&code(&seed, enrolled + 1)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    let kc = token_kubeconfig(&c, "carl-node", &token);
    assert_eq!(
        crate::trust::whoami(&c, &kc),
        format!("roster:{ns}:carl@acme.example")
    );
    for (verb, what, namespace, want) in [
        ("create", "memberships.roster.dev", ns, "yes"),
        ("create", "projects.roster.dev", ns, "yes"),
        ("patch", "organizations.roster.dev", ns, "no"),
        ("get", "secrets", ns, "no"),
        ("get", "memberships.roster.dev", other, "no"),
        ("get", "secrets", NS, "no"),
    ] {
        assert_eq!(
            can_i(&c, &kc, verb, what, namespace),
            want,
            "carl: {verb} {what} -n {namespace}"
        );
    }
    // What RBAC allows the webhook still judges: an Admin invites Members, not Admins.
    let eve = |role: &str| {
        format!(
            "apiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: eve, namespace: {ns}}}\nspec: {{email: eve@acme.example, role: {role}}}\n"
        )
    };
    let apply_as_carl =
        |yaml: &str| crate::trust::kubectl_stdin(&c, &kc, &["apply", "-f", "-"], yaml);
    let refused = apply_as_carl(&eve("Admin"));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("Admins may invite or remove Members only"),
        "{err}"
    );
    let allowed = apply_as_carl(&eve("Member"));
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );

    // Red team: bob, a Developer of project one, logs in for real; with his token, in his own
    // project namespace, the API server must refuse what reaches past the pod network: a
    // Service with externalIPs (kube-proxy then hands it the API server's connections to the
    // kubelet at 10.89.0.1:10250 — kubectl exec/logs of every namespace, the kubelet's serving
    // certificate is not verified — and to roster's webhook and authn Services, and the host's
    // connections to any address), and a pod on the host's network and PID namespace with the
    // host's / mounted (runs the host's binaries as uid 0 and reads every key on the machine).
    let page = crate::harness::accept(&c, ns, "bob").await;
    let (seed, enrolled) = enrol_on_page(&c, ns, "bob", &page).await;
    crate::members::wait_step(enrolled + 1);
    let (status, body) = login_api(
        &c,
        ns,
        "bob@acme.example",
        PASSWORD,
        Some(&code(&seed, enrolled + 1)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bob = token_kubeconfig(&c, "bob-node", body["token"].as_str().expect("token"));
    let project_ns = format!("{ns}-one");
    assert_eq!(
        can_i(&c, &bob, "create", "pods", &project_ns),
        "yes",
        "bob is a Developer in {project_ns}"
    );
    for (what, yaml) in [
        (
            "a Service with externalIPs [10.89.0.1] (the kubelet's address)",
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: rt-ext, namespace: {project_ns}}}\nspec: {{externalIPs: [10.89.0.1], ports: [{{port: 10250}}]}}\n"
            ),
        ),
        (
            "a pod with hostNetwork, hostPID and a hostPath of /",
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: rt-host, namespace: {project_ns}}}\nspec: {{hostNetwork: true, hostPID: true, containers: [{{name: c, image: x, volumeMounts: [{{name: h, mountPath: /h}}]}}], volumes: [{{name: h, hostPath: {{path: /}}}}]}}\n"
            ),
        ),
    ] {
        let out = crate::trust::kubectl_stdin(
            &c,
            &bob,
            &["create", "--dry-run=server", "-f", "-"],
            &yaml,
        );
        if out.status.success() {
            red_team_holes.push(format!("a Developer's token may create {what}"));
        }
    }
    assert!(red_team_holes.is_empty(), "red team: {red_team_holes:#?}");

    // Deleting the leader's pod (SIGTERM: it gives the lease up) hands the lease over, and a
    // change made right after converges.
    let holder = wait_for("a leader", Duration::from_secs(30), || {
        Some(lease_holder(&c)).filter(|h| !h.is_empty())
    });
    assert!(
        pods(&c).iter().any(|(name, ..)| *name == holder),
        "the lease holder {holder} is one of the pods"
    );
    let deleted = Instant::now();
    c.kubectl_ok(&["delete", "pod", &holder, "-n", NS, "--wait=false"]);
    let next = wait_for(
        "another replica to hold the lease",
        Duration::from_secs(15),
        || Some(lease_holder(&c)).filter(|h| !h.is_empty() && *h != holder),
    );
    eprintln!(
        "node tier: pod {holder} deleted, {next} leads {:?} later",
        deleted.elapsed()
    );
    apply(&c, &with_project(ns, "two"));
    wait_converged(&c, ns, "two", Duration::from_secs(30));
    rollout(&c);

    // helm upgrade with a changed value: a rollout, one pod at a time, every webhook call
    // through the Service answered meanwhile.
    let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let c = std::sync::Arc::new(c);
    let prober = {
        let (probing, c) = (probing.clone(), c.clone());
        std::thread::spawn(move || {
            let (mut answered, mut failed) = (0, 0);
            while probing.load(std::sync::atomic::Ordering::SeqCst) {
                if webhook_answers(&c) {
                    answered += 1;
                } else {
                    failed += 1;
                }
            }
            (answered, failed)
        })
    };
    let old: Vec<String> = pods(&c).into_iter().map(|p| p.0).collect();
    let mut upgraded = values();
    upgraded.retain(|v| !v.starts_with("resync="));
    upgraded.push("resync=3s".into());
    helm_in(&c, &["upgrade", RELEASE, "charts/roster"], &upgraded);
    rollout(&c);
    probing.store(false, std::sync::atomic::Ordering::SeqCst);
    let (answered, failed) = prober.join().expect("prober");
    let now: Vec<String> = pods(&c).into_iter().map(|p| p.0).collect();
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(
        now.iter().all(|p| !old.contains(p)),
        "every pod replaced: {old:?} → {now:?}"
    );
    assert!(answered > 0);
    assert_eq!(
        failed, 0,
        "webhook calls failed during the rollout ({answered} answered)"
    );
    apply(&c, &with_project(ns, "three"));
    wait_converged(&c, ns, "three", Duration::from_secs(30));

    // helm uninstall: the pods, Services, RBAC and webhook configuration go; the CRDs, the
    // organizations and what roster made for them stay.
    let kubeconfig = c.kubeconfig.display().to_string();
    helm(&[
        "uninstall",
        RELEASE,
        "--namespace",
        NS,
        "--kubeconfig",
        &kubeconfig,
        "--wait",
    ]);
    wait_for(
        "the release's pods to be gone",
        Duration::from_secs(60),
        || pods(&c).is_empty().then_some(()),
    );
    crate::in_cluster::uninstalled_as_documented(&c, ns, "three");

    // The node's teardown: by PID, then mounts, namespaces, cgroups, bridge, rules, sysctls.
    let c = std::sync::Arc::into_inner(c).expect("the only handle");
    let dir = c.dir.clone();
    let stopping = Instant::now();
    let status = c.shutdown();
    eprintln!("node tier: teardown in {:?}", stopping.elapsed());
    assert!(
        status.success(),
        "devcluster's teardown failed (its message is above)"
    );
    let log = std::fs::read_to_string(dir.join("node-teardown.log")).unwrap_or_default();
    assert!(log.contains("host as recorded"), "{log}");
    assert!(!std::path::Path::new("/run/roster-devcluster-node.json").exists());
    let after = host_footprint();
    let added: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    let gone: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
    assert!(
        added.is_empty() && gone.is_empty(),
        "the host differs after the teardown: added {added:?}, gone {gone:?}"
    );
}

/// Whether a TCP connection from network namespace `netns` to `addr` opens within 2 s.
fn connects_from(netns: &str, addr: &str) -> bool {
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
    Command::new("ip")
        .args(["netns", "exec", netns, "python3", "-c"])
        .arg(format!(
            "import socket; socket.create_connection(('{host}', {port}), timeout=2)"
        ))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An HTTPS POST from network namespace `netns`, without a client certificate and without
/// verifying the server: "HTTP <status>", or "refused: <why>" when the TLS handshake or the
/// connection fails (retried once: a Service's first connection may meet a pod just replaced).
fn https_post_from(netns: &str, addr: &str, path: &str) -> String {
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
    let script = format!(
        r#"import ssl, http.client
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    c = http.client.HTTPSConnection("{host}", {port}, context=ctx, timeout=3)
    c.request("POST", "{path}", body=b"{{}}", headers={{"content-type": "application/json"}})
    print("HTTP", c.getresponse().status)
except ssl.SSLError as e:
    print("refused:", e)
except Exception as e:
    print("error:", type(e).__name__, e)
"#
    );
    let mut answer = String::new();
    for _ in 0..2 {
        let out = Command::new("ip")
            .args(["netns", "exec", netns, "python3", "-c", &script])
            .output()
            .expect("ip netns exec");
        answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !answer.starts_with("error") {
            break;
        }
    }
    answer
}

/// The host's IPv4 addresses other than loopback and the node's bridge.
fn host_addresses() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ifname = *f.get(1)?;
            let ip = f.get(3)?.split('/').next()?;
            (ifname != "lo" && ifname != "roster0").then(|| ip.to_string())
        })
        .collect()
}

fn default_gateway() -> Option<String> {
    let out = Command::new("ip")
        .args(["route", "show", "default"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "via")?;
    words.next().map(str::to_string)
}

/// Where the node cannot run, `devcluster preflight` says why and exits 4 (make test then skips
/// the tier, or fails it with ROSTER_REQUIRE_NODE=1); a pod network that is not a /16 to /28 is
/// refused before anything is checked.
#[test]
fn the_node_preflight_names_why_it_cannot_run() {
    let bin = crate::harness::control_plane_bin();
    let preflight = |cidr: &str| {
        Command::new(bin.join("devcluster"))
            .args(["preflight", "--bin"])
            .arg(&bin)
            .args(["--node-cidr", cidr])
            .output()
            .expect("devcluster preflight")
    };
    // Loopback's own network: the pods' addresses would shadow the host's.
    let out = preflight("127.0.0.0/16");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("the node cannot run here") && err.contains("overlaps 127.0.0.1/8"),
        "{err}"
    );
    let out = preflight("10.0.0.0/8");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("use a /16 to /28"), "{err}");
}
