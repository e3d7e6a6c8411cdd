//! Identity against the real API server: the credential store's compare-and-swap, and members
//! going through invitation, password, TOTP, login, kubectl and lockout.

use futures::future::join_all;
use roster::identity::Secret;
use roster::identity::lockout::Policy;
use roster::identity::login::{self, Attempt, Keys};
use roster::identity::password::Hasher;
use roster::identity::seal;
use roster::identity::store::{Record, Store};

use crate::harness::{cluster, shared};

/// A Store reading through a watch of `ns`'s credential Secrets, as `roster run` has one.
async fn cached_store(client: kube::Client, ns: &str) -> Store {
    use futures::StreamExt;
    let (reader, changes) = roster::cache::credentials(&client, ns);
    tokio::spawn(changes.for_each(|_| async {}));
    reader.wait_until_ready().await.expect("watch ready");
    Store::new(client, ns).with_cache(reader)
}

// The guard orders this test against the API server restart test; each test has a runtime of
// its own, so holding it across an await blocks nothing else.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_count_exactly_to_the_limit() {
    let _api = shared();
    let c = cluster();
    let own_ns = c.namespace("roster-system");
    let client = c.client().await;
    // Reading from the API server; through a watch (as roster runs); and two processes with
    // a watch each (two replicas): compare-and-swap keeps the count exact in all three.
    let plain = [Store::new(client.clone(), &own_ns)];
    let cached = [cached_store(client.clone(), &own_ns).await];
    let replicas = [
        cached_store(client.clone(), &own_ns).await,
        cached_store(client.clone(), &own_ns).await,
    ];
    count_exactly(&client, &plain, "bob@acme.example").await;
    count_exactly(&client, &cached, "carl@acme.example").await;
    count_exactly(&client, &replicas, "dave@acme.example").await;
}

async fn count_exactly(client: &kube::Client, stores: &[Store], email: &'static str) {
    let store = &stores[0];
    // Small argon2 parameters: this test is about counting, not hashing cost.
    let hasher = Hasher::new(1024, 1, 1, 4).expect("params");
    let phc = hasher
        .hash(&Secret::new("correct horse battery staple"))
        .await
        .expect("hash");
    let org = "acme";
    store
        .create(
            org,
            email,
            &Record {
                email: email.into(),
                password_hash: Some(phc),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let policy = Policy {
        max_failed: 10,
        lock_seconds: 900,
    };
    let now = 1_700_000_000;
    let (key, _) = seal::Key::generate();
    let keys = Keys {
        hasher: &hasher,
        seal: &key,
    };
    let attempt = |i: usize, password: &'static str, now: u64| {
        let (store, keys, policy) = (&stores[i % stores.len()], &keys, &policy);
        async move {
            login::attempt(
                store,
                org,
                email,
                None,
                &Secret::new(password),
                None,
                keys,
                policy,
                now,
            )
            .await
        }
    };
    let outcomes = join_all((0..50).map(|i| attempt(i, "not the password", now))).await;
    let outcomes: Vec<Attempt> = outcomes.into_iter().map(|o| o.expect("attempt")).collect();
    let counted = outcomes
        .iter()
        .filter(|o| matches!(o, Attempt::Failed { .. }))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Attempt::Locked { .. }))
        .count();
    assert_eq!(
        (counted, refused),
        (10, 40),
        "{} store(s): {outcomes:?}",
        stores.len()
    );
    let record = Store::new(client.clone(), store.namespace())
        .get(org, email)
        .await
        .expect("record");
    assert_eq!((record.failed, record.locked_until), (10, Some(now + 900)));

    // Locked means locked: even the right password is refused, and not counted.
    for i in 0..stores.len() {
        assert_eq!(
            attempt(i, "correct horse battery staple", now + 1)
                .await
                .expect("attempt"),
            Attempt::Locked { until: now + 900 }
        );
    }
    // What an admin's unlock does (Identity::unlock, with its nonce and log line).
    store
        .update(org, email, |r| {
            let u = roster::identity::lockout::unlock();
            let mut next = r.clone();
            (next.failed, next.locked_until) = (u.failed, u.locked_until);
            (Some(next), ())
        })
        .await
        .expect("unlock");
    assert!(matches!(
        attempt(0, "correct horse battery staple", now + 2)
            .await
            .expect("attempt"),
        Attempt::Accepted { .. }
    ));
    let record = Store::new(client.clone(), store.namespace())
        .get(org, email)
        .await
        .expect("record");
    assert_eq!(record.failed, 0);
}

/// An invitation is stored before its link goes out: a link that opens nothing yet was read
/// and clicked in the gap ("Invitation not valid"), and where the record cannot be stored no
/// link may go out at all. And a link that could not be delivered is withdrawn: nobody holds
/// it, so the next reconcile issues another.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_stored_before_its_link_goes_out() {
    use roster::identity::service::{Identity, Issue, Keys};
    let _api = shared();
    let c = cluster();
    let client = c.client().await;
    let ns = c.namespace("stored-first");
    let gus = |ns: &str| -> roster::api::Membership {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "roster.dev/v1alpha1", "kind": "Membership",
            "metadata": {"name": "gus", "namespace": ns},
            "spec": {"email": "gus@acme.example"},
        }))
        .expect("membership")
    };
    let identity = |own: &str| {
        let client = client.clone();
        let own = own.to_string();
        async move {
            let keys = Keys::load_or_create(client.clone(), crate::harness::ROSTER_NAMESPACE)
                .await
                .expect("keys");
            Identity::new(
                client,
                &own,
                keys,
                Hasher::new(1024, 1, 1, 2).expect("hasher"),
                "https://127.0.0.1".into(),
                None,
                roster::identity::audit::SecurityLog::print_only(),
            )
        }
    };
    let now = 1_700_000_000;
    let issue = Issue {
        ttl_seconds: 3600,
        nonce: None,
        scope: "Member:",
        readers: &[],
        now,
    };

    // Records kept in a namespace that does not exist: storing fails, so nothing is delivered.
    let nowhere = identity("roster-nowhere").await;
    assert!(nowhere.invite(&gus(&ns), &issue).await.is_err());
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "secrets",
            "-n",
            &ns,
            "-l",
            "roster.dev/membership=gus",
            "-o",
            "name"
        ]),
        "",
        "a link was delivered for an invitation that was never stored"
    );

    // The organization's namespace does not exist: the link's Role, written before the
    // record, cannot be, so no invitation is stored or left open. (A link refused after it was
    // stored is withdrawn: `an_undeliverable_invitation_does_not_spin_the_reconciler`.)
    let gone = format!("{ns}-gone");
    let own = identity(crate::harness::ROSTER_NAMESPACE).await;
    assert!(own.invite(&gus(&gone), &issue).await.is_err());
    let store = Store::new(client.clone(), crate::harness::ROSTER_NAMESPACE);
    match store.get(&gone, "gus@acme.example").await {
        Err(roster::identity::store::Error::NotFound) => {}
        Ok(record) => {
            assert_eq!(
                record.invitation, None,
                "an undelivered invitation stays open"
            );
            store
                .delete_if(&gone, "gus@acme.example", None)
                .await
                .expect("clean up");
        }
        Err(e) => panic!("{e}"),
    }
}

/// Each link is written under names of its own (Secret and Role `roster-invitation-<member>-
/// <id>`): a replaced link's Secret and Role go, and so do the accepted link's. A binding
/// that still names a former reader (the API server's authorizer lags behind RoleBinding
/// writes, and a write can fail) then opens nothing live (red team 23: with one name per
/// member, the replacement went into the Secret the former reader could still read).
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_link_has_names_of_its_own_and_the_old_ones_go() {
    use roster::identity::service::{Identity, Issue, Keys};
    let _api = shared();
    let c = cluster();
    let client = c.client().await;
    let ns = c.namespace("own-names");
    let gus: roster::api::Membership = serde_json::from_value(serde_json::json!({
        "apiVersion": "roster.dev/v1alpha1", "kind": "Membership",
        "metadata": {"name": "gus", "namespace": ns},
        "spec": {"email": "gus@acme.example"},
    }))
    .expect("membership");
    let keys = Keys::load_or_create(client.clone(), crate::harness::ROSTER_NAMESPACE)
        .await
        .expect("keys");
    let identity = Identity::new(
        client.clone(),
        crate::harness::ROSTER_NAMESPACE,
        keys,
        Hasher::new(1024, 1, 1, 2).expect("hasher"),
        "https://127.0.0.1".into(),
        None,
        roster::identity::audit::SecurityLog::print_only(),
    );
    let store = Store::new(client.clone(), crate::harness::ROSTER_NAMESPACE);
    let now = 1_700_000_000;
    let readers = ["olga@acme.example".to_string()];
    let issue = |nonce| Issue {
        ttl_seconds: 3600,
        nonce,
        scope: "Member:",
        readers: &readers,
        now,
    };
    let link_of = |r: &Record| {
        r.invitation
            .as_ref()
            .and_then(|i| i.secret_name("gus"))
            .expect("a link delivered as a Secret")
    };
    let exists = |kind: &str, name: &str| {
        c.kubectl_try(&["get", kind, name, "-n", &ns, "-o", "name"])
            .is_some()
    };
    let gone = |kind: &str, name: &str| {
        crate::harness::wait_for(
            &format!("{kind} {name} to go"),
            std::time::Duration::from_secs(10),
            || (!exists(kind, name)).then_some(()),
        )
    };

    identity.invite(&gus, &issue(None)).await.expect("invited");
    let first = link_of(&store.get(&ns, "gus@acme.example").await.expect("record"));
    assert!(first.starts_with("roster-invitation-gus-"), "{first}");
    assert!(exists("secret", &first) && exists("role", &first));

    identity
        .invite(&gus, &issue(Some("again")))
        .await
        .expect("resent");
    let second = link_of(&store.get(&ns, "gus@acme.example").await.expect("record"));
    assert_ne!(first, second, "the new link is written under new names");
    assert!(exists("secret", &second) && exists("role", &second));
    gone("secret", &first);
    gone("role", &first);
    let role = c.kubectl_ok(&[
        "get",
        "role",
        &second,
        "-n",
        &ns,
        "-o",
        "jsonpath={.rules[0].resourceNames[0]}",
    ]);
    assert_eq!(role, second, "its Role opens its Secret alone");

    // Accepted: the link's Secret and Role go too.
    let b64 = c.kubectl_ok(&[
        "get",
        "secret",
        &second,
        "-n",
        &ns,
        "-o",
        "jsonpath={.data.link}",
    ]);
    use base64::Engine;
    let url = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .expect("base64"),
    )
    .expect("utf8");
    let token = crate::harness::query_value(&url, "token");
    identity
        .accept(
            &gus,
            "Member:",
            &token,
            &Secret::new(crate::harness::PASSWORD),
            12,
            now + 1,
        )
        .await
        .expect("accepted");
    gone("secret", &second);
    gone("role", &second);
    store
        .delete_if(&ns, "gus@acme.example", None)
        .await
        .expect("clean up");
}

/// A link that can never be delivered (with SMTP: an address the relay refuses, or the relay
/// down; with Secret delivery: the link Secret refused, here by a quota of the organization's
/// namespace) is retried after a backoff (2 s doubling to 5 minutes). Each failed delivery
/// writes the credential record twice (the invitation stored, then withdrawn), and each write
/// triggers the organization's reconcile at once: without the backoff the reconcile re-issued
/// it at once, without end — 932 writes to the one record in 20 s (red team of 8cd83cb, seen
/// failing).
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_invitation_does_not_spin_the_reconciler() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Secret;
    use kube::Api;
    use kube::runtime::watcher;
    use std::time::{Duration, Instant};
    let _api = shared();
    let c = cluster();
    let client = c.client().await;
    let ns = c.namespace("spin");
    let member = "gus";
    let email = "gus@acme.example";
    // Every Secret write in the organization's namespace is refused from now on.
    let quota = format!(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: full, namespace: {ns}}}\nspec: {{hard: {{secrets: \"0\"}}}}\n"
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(&quota));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    loop {
        let out = c.kubectl(&["create", "secret", "generic", "probe", "-n", &ns]);
        if !out.status.success() {
            break;
        }
        let _ = c.kubectl(&["delete", "secret", "probe", "-n", &ns]);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the quota is not enforced"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let yaml = format!(
        r#"apiVersion: roster.dev/v1alpha1
kind: Organization
metadata: {{name: {ns}, namespace: {ns}}}
spec: {{owner: alice@acme.example}}
---
apiVersion: roster.dev/v1alpha1
kind: Membership
metadata: {{name: {member}, namespace: {ns}}}
spec: {{email: {email}, role: Member}}
"#
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(&yaml));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let name = Store::secret_name(&ns, email);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), crate::harness::ROSTER_NAMESPACE);
    // Let the first attempts happen.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Count the writes to that one record over a while.
    let window = Duration::from_secs(20);
    let wc = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(secrets.clone(), wc).boxed();
    let start = Instant::now();
    let mut writes = 0u32;
    let mut listed = false;
    while start.elapsed() < window {
        match tokio::time::timeout(window - start.elapsed(), events.next()).await {
            Ok(Some(Ok(watcher::Event::InitDone))) => listed = true,
            Ok(Some(Ok(watcher::Event::Apply(_)))) if listed => writes += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    eprintln!("{writes} writes to {name} in {window:?}");
    // From 5 s to 25 s after the first attempt, the backoff allows about three more (8, 16 s
    // after their predecessors), 2 writes each.
    assert!(
        writes <= 20,
        "{writes} writes to one member's credential record in {window:?}: a delivery that \
         can never succeed spins the organization's reconcile"
    );
}
