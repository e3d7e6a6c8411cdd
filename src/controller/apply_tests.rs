//! The tier between the pure `plan()` and the real API server: `apply()` and `reconcile()`
//! against a scripted API (a tower service standing in for the API server, as kube-rs's
//! controller-rs tests do). It records every request and answers each one by a rule of the
//! test's: the order of writes, what one failure holds back (and what it does not), and that a
//! converged world costs no request at all.

use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::plan::{Plan, Settings, World, plan};
use super::*;
use crate::fixtures::{NS, member, org, project, ts};

type Rule = dyn Fn(&Method, &str, &Value) -> Option<(StatusCode, Value)> + Send + Sync;

/// The scripted API server: every request, in order; `rule` may answer one (else: success,
/// echoing the body, which is what an apply answers with).
#[derive(Clone)]
struct Scripted {
    log: Arc<Mutex<Vec<(Method, String)>>>,
    rule: Arc<Rule>,
}

impl Scripted {
    fn new(
        rule: impl Fn(&Method, &str, &Value) -> Option<(StatusCode, Value)> + Send + Sync + 'static,
    ) -> Scripted {
        Scripted {
            log: Arc::default(),
            rule: Arc::new(rule),
        }
    }

    fn ok() -> Scripted {
        Scripted::new(|_, _, _| None)
    }

    fn client(&self) -> Client {
        let me = self.clone();
        crate::fixtures::scripted_client(
            move |method, path, body| {
                if let Ok(mut log) = me.log.lock() {
                    log.push((method.clone(), path.to_string()));
                }
                (me.rule)(method, path, &body)
                    .unwrap_or_else(|| (StatusCode::OK, echo(method, path, body)))
            },
            NS,
        )
    }

    /// The writes made, as "VERB path".
    fn writes(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(m, _)| *m != Method::GET)
                    .map(|(m, p)| format!("{m} {p}"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the API server answers a successful write with: the object (a status or finalizer patch
/// carries only part of it, so a whole object of the kind is made up around it).
fn echo(method: &Method, path: &str, mut body: Value) -> Value {
    if *method == Method::DELETE {
        return json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {}});
    }
    if body.get("metadata").is_none() {
        body["metadata"] = json!({"name": "x"});
    }
    if path.contains("/roster.dev/") && body.get("spec").is_none() {
        body["spec"] = if path.contains("/organizations/") {
            json!({"owner": "x@y.example"})
        } else if path.contains("/memberships/") {
            json!({"email": "x@y.example"})
        } else {
            json!({})
        };
    }
    body
}

fn forbidden(message: &str) -> (StatusCode, Value) {
    (
        StatusCode::FORBIDDEN,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden",
               "code": 403, "message": message, "metadata": {}}),
    )
}

fn context(client: Client) -> Context {
    let caches = crate::cache::Caches::new(&client, None);
    let (stores, _) = caches.split();
    let (namespaces, _) = kube::runtime::reflector::store();
    Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "roster".into(),
                instance: None,
            },
        ),
        client,
        stores,
        namespaces,
        config: Config {
            settings: Settings::default(),
            metrics: crate::metrics::Metrics::new(),
            resync: Duration::from_secs(600),
            identity: None,
            leadership: crate::runtime::Leadership::always(),
        },
        failures: Mutex::new(HashMap::new()),
        own_status: Default::default(),
    }
}

/// acme with projects one and two, dave Viewer in both.
fn acme() -> World {
    let mut o = org("alice@acme.example");
    o.metadata.finalizers = Some(vec![labels::FINALIZER.into()]);
    let with_finalizer = |mut p: Project| {
        p.metadata.finalizers = Some(vec![labels::FINALIZER.into()]);
        p
    };
    World {
        namespace: NS.into(),
        home_terminating: false,
        home_is_project_of: None,
        org: Some(o),
        stray_orgs: vec![],
        projects: vec![
            with_finalizer(project("one")),
            with_finalizer(project("two")),
        ],
        memberships: vec![
            member("alice", Some(crate::api::OrgRole::Admin), &[]),
            member(
                "dave",
                Some(crate::api::OrgRole::Member),
                &[
                    ("one", crate::api::ProjectRole::Viewer),
                    ("two", crate::api::ProjectRole::Viewer),
                ],
            ),
        ]
        .into_iter()
        .map(Arc::new)
        .collect(),
        namespaces: BTreeMap::new(),
        rolebindings: vec![],
        credentials: BTreeMap::new(),
        now: ts("2026-01-10T00:00:00Z"),
    }
}

/// What the API server holds after a plan went through (the parts `plan()` reads back).
fn applied(mut w: World, p: &Plan) -> World {
    for n in p.create_namespaces.iter().chain(&p.adopt_namespaces) {
        w.namespaces.insert(n.name_any(), n.clone());
    }
    let key = |rb: &k8s_openapi::api::rbac::v1::RoleBinding| {
        (
            rb.metadata.namespace.clone().unwrap_or_default(),
            rb.name_any(),
        )
    };
    w.rolebindings
        .retain(|rb| !p.delete_rolebindings.contains(&key(rb)));
    for rb in &p.rolebindings {
        w.rolebindings.retain(|have| key(have) != key(rb));
        w.rolebindings.push(rb.clone());
    }
    if let (Some(o), Some(s)) = (w.org.as_mut(), &p.org_status) {
        o.status = Some(s.clone());
    }
    for (name, s) in &p.project_status {
        if let Some(x) = w.projects.iter_mut().find(|x| x.name_any() == *name) {
            x.status = Some(s.clone());
        }
    }
    for (name, s) in &p.membership_status {
        if let Some(x) = w
            .memberships
            .iter_mut()
            .map(Arc::make_mut)
            .find(|x| x.name_any() == *name)
        {
            x.status = Some(s.clone());
        }
    }
    w
}

/// roster's identity service on `client` (cheap hashes, fresh keys, log to standard output).
/// A context whose controller runs identity (invitations) through `client`.
fn identity_context(client: Client) -> Context {
    let mut ctx = context(client.clone());
    ctx.config.identity = Some(identity_on(client));
    ctx.config.settings.identity = true;
    ctx
}

fn identity_on(client: Client) -> Arc<crate::identity::service::Identity> {
    use crate::identity::{audit::SecurityLog, password::Hasher, seal, service, token::Signer};
    let (seal_key, _) = seal::Key::generate();
    Arc::new(service::Identity::new(
        client,
        "roster-system",
        service::Keys {
            seal: seal_key,
            signer: Signer::new(&[7; 32]),
        },
        Hasher::new(1024, 1, 1, 2).expect("hasher"),
        "https://id.acme.example".into(),
        None,
        SecurityLog::print_only(),
    ))
}

fn position(writes: &[String], what: &str) -> usize {
    writes
        .iter()
        .position(|w| w.contains(what))
        .unwrap_or_else(|| panic!("no write of {what} in {writes:#?}"))
}

#[tokio::test]
async fn a_new_organization_is_written_namespaces_first_and_its_status_last() {
    let api = Scripted::ok();
    let ctx = context(api.client());
    let w = acme();
    let p = plan(&w, &ctx.config.settings);
    apply::apply(&ctx, &w, &p).await.expect("applied");
    let writes = api.writes();
    // Namespaces are created (POST), never applied over whatever might be there.
    assert!(
        writes.contains(&"POST /api/v1/namespaces".to_string()),
        "{writes:#?}"
    );
    assert!(
        !writes
            .iter()
            .any(|w| w.starts_with("PATCH /api/v1/namespaces/")),
        "{writes:#?}"
    );
    let namespace = position(&writes, "POST /api/v1/namespaces");
    let binding = position(&writes, "/namespaces/acme-one/rolebindings/");
    assert!(
        namespace < binding,
        "a binding before its namespace: {writes:#?}"
    );
    let org_status = position(&writes, "/organizations/acme/status");
    let last_status = writes
        .iter()
        .rposition(|w| w.ends_with("/status"))
        .unwrap_or(0);
    assert_eq!(
        org_status, last_status,
        "the Organization's status last: {writes:#?}"
    );
}

#[tokio::test]
async fn removals_come_first_and_one_broken_project_holds_back_nothing_else() {
    // Converge acme, then disable dave and add a project whose namespace the API server
    // refuses.
    let settled = {
        let w = acme();
        let p = plan(&w, &Settings::default());
        applied(w, &p)
    };
    let mut w = settled.clone();
    Arc::make_mut(&mut w.memberships[1]).spec.disabled = true;
    w.projects.push(project("broken"));
    let api = Scripted::new(|method, path, body| {
        (*method == Method::POST
            && path == "/api/v1/namespaces"
            && body["metadata"]["name"] == "acme-broken")
            .then(|| forbidden("namespaces \"acme-broken\" is forbidden by policy"))
    });
    let ctx = context(api.client());
    let p = plan(&w, &ctx.config.settings);
    let err = apply::apply(&ctx, &w, &p)
        .await
        .expect_err("the broken project fails");
    assert_eq!(crate::Reason::reason(&err), "Forbidden", "{err}");
    let writes = api.writes();
    // dave's removal from the bindings of one and two went through, before anything else.
    let first_removal = position(&writes, "/namespaces/acme-one/rolebindings/roster-viewer");
    let second_removal = position(&writes, "/namespaces/acme-two/rolebindings/roster-viewer");
    let broken = position(&writes, "POST /api/v1/namespaces");
    assert!(
        first_removal < broken && second_removal < broken,
        "{writes:#?}"
    );
    // Nothing was written into the namespace that was never made; the broken project's
    // status says why; the Organization's status is left to the failure report.
    assert!(
        !writes.iter().any(|w| w.contains("acme-broken/")),
        "{writes:#?}"
    );
    assert!(
        writes.iter().any(|w| w.contains("/projects/broken/status")),
        "{writes:#?}"
    );
    assert!(
        !writes
            .iter()
            .any(|w| w.contains("/organizations/acme/status")),
        "{writes:#?}"
    );
    // Its finalizer went on before anything was tried for it (clean-up is guaranteed).
    let finalizer = writes
        .iter()
        .position(|w| w.starts_with("PATCH") && w.ends_with("/projects/broken"))
        .unwrap_or_else(|| panic!("no finalizer for broken: {writes:#?}"));
    assert!(finalizer < broken, "{writes:#?}");
}

#[tokio::test]
async fn a_converged_world_costs_no_request() {
    let w = {
        let w = acme();
        let p = plan(&w, &Settings::default());
        let w = applied(w, &p);
        let p = plan(&w, &Settings::default());
        applied(w, &p)
    };
    let p = plan(&w, &Settings::default());
    assert_eq!(p.writes(), 0, "{p:?}");
    let api = Scripted::ok();
    let ctx = context(api.client());
    apply::apply(&ctx, &w, &p).await.expect("applied");
    assert_eq!(api.writes(), Vec::<String>::new());
}

#[tokio::test]
async fn a_namespace_made_by_someone_else_meanwhile_is_not_taken() {
    let api = Scripted::new(|method, path, _| {
        (*method == Method::POST && path == "/api/v1/namespaces").then(|| {
            (
                StatusCode::CONFLICT,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "AlreadyExists",
                       "code": 409, "message": "namespaces already exists", "metadata": {}}),
            )
        })
    });
    let ctx = context(api.client());
    let w = acme();
    let p = plan(&w, &ctx.config.settings);
    let err = apply::apply(&ctx, &w, &p).await.expect_err("taken");
    assert_eq!(crate::Reason::reason(&err), "NamespaceTaken");
    let writes = api.writes();
    assert!(
        !writes
            .iter()
            .any(|w| w.contains("/namespaces/acme-one/") || w.contains("/namespaces/acme-two/")),
        "bindings written into a namespace roster did not create: {writes:#?}"
    );
}

/// The third red-team round: the reconciler's identity actions (Invite, Unlock, ResetMfa,
/// Forget) go through Identity's own client, not the guarded one, and were sent by a replica
/// that no longer led. Wired as runtime::serve wires them; seen failing first.
#[tokio::test]
async fn a_replica_that_lost_the_lease_sends_no_identity_write() {
    let api = Scripted::new(|m, path, _| {
        (*m == Method::GET && path.contains("/secrets/")).then(|| {
            (
                StatusCode::NOT_FOUND,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                       "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
            )
        })
    });
    let leadership = crate::runtime::Leadership::led_and_lost();
    assert!(!leadership.is_leader(), "this replica does not lead");
    let raw = api.client();
    // As runtime::serve: the controller's client guarded; identity::start(.., &client, ..).
    let mut ctx = context(crate::runtime::guarded(raw.clone(), leadership.clone()));
    ctx.config.identity = Some(identity_on(raw));
    ctx.config.leadership = leadership;
    ctx.config.settings.identity = true;
    // A converged organization but for dave's invitation.
    let w = acme();
    let first = plan(&w, &ctx.config.settings);
    let w = applied(w, &first);
    let p = plan(&w, &ctx.config.settings);
    assert!(
        !p.identity.is_empty(),
        "an invitation is planned: {:?}",
        p.identity
    );
    let _ = apply::apply(&ctx, &w, &p).await;
    let writes = api.writes();
    assert!(
        writes.is_empty(),
        "a replica that does not lead sent these writes: {writes:#?}"
    );
}

/// A Forget planned from an old observation deletes the credentials of that Membership only:
/// a record a new Membership of the same address has made since is kept (the delete is
/// conditional on the record's Membership UID and the read's resourceVersion).
#[tokio::test]
async fn forgetting_a_member_keeps_a_new_membership_s_credentials() {
    use crate::identity::store::{Record, Store};
    let email = "dave@acme.example";
    let name = Store::secret_name(NS, email);
    let stored = |uid: &str| {
        let record = Record {
            email: email.into(),
            membership_uid: Some(uid.into()),
            ..Default::default()
        };
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": "roster-system", "resourceVersion": "7", "uid": "s1"},
               "data": {"record": base64::Engine::encode(&base64::engine::general_purpose::STANDARD,
                        serde_json::to_vec(&record).expect("record"))}})
    };
    for (now_held_by, deleted) in [("uid-new", false), ("uid-old", true)] {
        let answer = stored(now_held_by);
        let path = format!("/secrets/{name}");
        let api = Scripted::new(move |m, p, _| {
            (*m == Method::GET && p.ends_with(&path)).then(|| (StatusCode::OK, answer.clone()))
        });
        let store = Store::new(api.client(), "roster-system");
        store
            .delete_if(NS, email, Some("uid-old"))
            .await
            .expect("forget");
        assert_eq!(
            api.writes().iter().any(|w| w.starts_with("DELETE")),
            deleted,
            "record held by {now_held_by}: {:?}",
            api.writes()
        );
    }
}

/// While MFA is required, forgetting an address keeps a tombstone of its record (when it
/// first joined; nothing of the Membership's), written only over the record of the Membership
/// the Forget was planned for: a new Membership's record made since is left alone.
#[tokio::test]
async fn forgetting_while_mfa_is_required_keeps_only_when_the_address_first_joined() {
    use crate::identity::store::{Record, Store};
    let email = "dave@acme.example";
    let name = Store::secret_name(NS, email);
    let secret = |record: &Record| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": "roster-system", "resourceVersion": "7", "uid": "s1"},
               "data": {"record": base64::Engine::encode(&base64::engine::general_purpose::STANDARD,
                        serde_json::to_vec(record).expect("record"))}})
    };
    for (now_held_by, written) in [("uid-new", false), ("uid-old", true)] {
        let held = Record {
            email: email.into(),
            membership_uid: Some(now_held_by.into()),
            password_hash: Some("$argon2id$HASH".into()),
            first_joined: Some(100),
            ..Default::default()
        };
        let answer = secret(&held);
        let path = format!("/secrets/{name}");
        let patches: Arc<Mutex<Vec<Value>>> = Arc::default();
        let keep = patches.clone();
        let api = Scripted::new(move |m, p, body| {
            if !p.ends_with(&path) {
                return None;
            }
            if *m == Method::PATCH {
                keep.lock().expect("lock").push(body.clone());
            }
            Some((StatusCode::OK, answer.clone()))
        });
        identity_on(api.client())
            .forget(NS, email, Some("uid-old"), Some(100))
            .await
            .expect("forget");
        let patches = patches.lock().expect("lock").clone();
        assert!(
            !api.writes().iter().any(|w| w.starts_with("DELETE")),
            "{:?}",
            api.writes()
        );
        assert_eq!(!patches.is_empty(), written, "record held by {now_held_by}");
        if let Some(p) = patches.first() {
            let b64 = p["data"]["record"].as_str().expect("record");
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
                .expect("base64");
            let r: Record = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(r, Record::tombstone(email, 100));
            assert!(r.is_tombstone() && r.password_hash.is_none() && r.membership_uid.is_none());
        }
    }
}

/// An identity action's Event ("Invited", ...) is published only once the action succeeded:
/// with the credential writes refused, the invitation fails and no Event claims it was issued
/// (the failure is reported by the Warning and Ready=False); the twin, with writes accepted,
/// publishes it.
#[tokio::test]
async fn an_identity_event_is_published_only_after_its_action_succeeded() {
    for (secrets_refused, want_event) in [(true, false), (false, true)] {
        let reasons = identity_events(acme(), secrets_refused).await;
        assert_eq!(
            reasons.iter().any(|r| r == "Invited"),
            want_event,
            "secrets refused: {secrets_refused}; Events: {reasons:?}"
        );
    }
}

/// A bulk import's first invitations are one Event on the Organization, not one per member
/// (20,000 members were 20,000 Events, each said twice); a few keep one Event each (above).
#[tokio::test]
async fn a_bulk_of_invitations_is_one_event() {
    let mut w = acme();
    for i in 0..=super::status::BULK_MEMBERS {
        let m = member(&format!("new{i}"), Some(crate::api::OrgRole::Member), &[]);
        w.memberships.push(Arc::new(m));
    }
    let reasons = identity_events(w, false).await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "MembersInvited").count(),
        1,
        "{reasons:?}"
    );
    assert!(!reasons.iter().any(|r| r == "Invited"), "{reasons:?}");
}

/// An invitation planned for a member who accepted meanwhile sends nothing, and no Event claims
/// it did (red team of 8cd83cb: `Invited` was published all the same).
#[tokio::test]
async fn no_invitation_event_when_the_member_accepted_meanwhile() {
    let w = acme();
    let mut stored = HashMap::new();
    for m in &w.memberships {
        let email = m.spec.email.clone();
        let record = crate::identity::store::Record {
            email: email.clone(),
            membership_uid: m.metadata.uid.clone(),
            accepted_at: Some(1),
            ..Default::default()
        };
        let name = crate::identity::store::Store::secret_name(NS, &email);
        stored.insert(
            format!("/api/v1/namespaces/roster-system/secrets/{name}"),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": name, "namespace": "roster-system", "resourceVersion": "1"},
                   "data": {"record": base64::Engine::encode(
                       &base64::engine::general_purpose::STANDARD,
                       serde_json::to_vec(&record).expect("json"))}}),
        );
    }
    let reasons = identity_events_with(w, false, stored).await;
    assert!(!reasons.iter().any(|r| r == "Invited"), "{reasons:?}");
}

/// The reasons of the Events one reconcile of `w` publishes with identity on (after a first
/// reconcile wrote its statuses), the credential writes refused or kept.
async fn identity_events(w: World, secrets_refused: bool) -> Vec<String> {
    identity_events_with(w, secrets_refused, HashMap::new()).await
}

/// `identity_events`, with credential Secrets already stored (by API path).
async fn identity_events_with(
    w: World,
    secrets_refused: bool,
    stored: HashMap<String, Value>,
) -> Vec<String> {
    let reasons: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = reasons.clone();
    // Secrets are kept (the credential record is written, then read back and updated).
    let secrets: Arc<Mutex<HashMap<String, Value>>> = Arc::new(Mutex::new(stored));
    let api = Scripted::new(move |m, path, body| {
        if *m == Method::POST
            && path.ends_with("/events")
            && let (Ok(mut seen), Some(r)) = (seen.lock(), body["reason"].as_str())
        {
            seen.push(r.to_string());
        }
        if !path.contains("/secrets") {
            return None;
        }
        if secrets_refused && *m != Method::GET {
            return Some(forbidden("secrets are not yours"));
        }
        let mut kept = secrets.lock().expect("secrets");
        keep_secret(&mut kept, m, path, body)
    });
    let ctx = identity_context(api.client());
    let first = plan(&w, &ctx.config.settings);
    let w = applied(w, &first);
    let p = plan(&w, &ctx.config.settings);
    assert!(!p.identity.is_empty(), "an invitation is planned");
    let result = apply::apply(&ctx, &w, &p).await;
    assert_eq!(result.is_err(), secrets_refused, "{result:?}");
    // Events are sent in the background by the recorder: give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    reasons.lock().map(|r| r.clone()).unwrap_or_default()
}

/// Secrets kept by API path, as the API server would: created, read, written over (each write
/// a new resourceVersion), deleted.
fn keep_secret(
    kept: &mut HashMap<String, Value>,
    m: &Method,
    path: &str,
    body: &Value,
) -> Option<(StatusCode, Value)> {
    let key = match *m {
        Method::POST => format!("{path}/{}", body["metadata"]["name"].as_str()?),
        _ => path.to_string(),
    };
    match *m {
        Method::GET => Some(match kept.get(&key) {
            Some(v) => (StatusCode::OK, v.clone()),
            None => (
                StatusCode::NOT_FOUND,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                       "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
            ),
        }),
        Method::DELETE => {
            kept.remove(&key);
            None
        }
        // A patch of a kept Secret is merged into it (so that it reads back whole).
        Method::PATCH if kept.contains_key(&key) => {
            let v = kept.get_mut(&key)?;
            let rv = v["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(1);
            merge(v, body);
            v["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
            Some((StatusCode::OK, v.clone()))
        }
        _ => {
            let mut v = body.clone();
            v["metadata"]["resourceVersion"] = json!((kept.len() + 2).to_string());
            v["metadata"]["name"] = json!(key.rsplit('/').next().unwrap_or_default());
            kept.insert(key, v.clone());
            Some((StatusCode::OK, v))
        }
    }
}

/// A reconcile waits for the cache to show only the statuses the server moved: a write it
/// found nothing to change in answers the version planned from, and waiting for that one to
/// move cost the whole catch-up time.
#[test]
fn only_statuses_the_server_moved_are_waited_for() {
    let s = |v: &str| Some(v.to_string());
    let written = vec![
        ("moved".to_string(), s("12")),
        ("unchanged".to_string(), s("7")),
        ("gone".to_string(), None),
        ("not-planned-from".to_string(), s("13")),
    ];
    let planned_from = |name: &str| match name {
        "moved" => Some(s("5")),
        "unchanged" => Some(s("7")),
        "gone" => Some(s("9")),
        _ => None,
    };
    assert_eq!(
        apply::awaited(&written, planned_from),
        vec![("moved", s("5"))]
    );
}

/// The Organization's own status write is waited for too (the next plan takes when MFA
/// became required from its conditions): written from a cache without it, a cold start wrote
/// an MFA organization's every member twice. As for the others, only when the server moved it.
#[test]
fn the_organization_s_status_write_is_waited_for_when_the_server_moved_it() {
    let mut w = acme();
    if let Some(o) = w.org.as_mut() {
        o.metadata.resource_version = Some("5".into());
    }
    let s = |v: &str| Some(v.to_string());
    let moved = |rv: &str| apply::Moved {
        orgs: vec![(NS.to_string(), s(rv))],
        ..Default::default()
    };
    let written = moved("12");
    assert_eq!(apply::pending(&w, &written).orgs, vec![(NS, s("5"))]);
    let unchanged = moved("5");
    assert_eq!(apply::pending(&w, &unchanged), apply::Pending::default());
}

/// An API server keeping Secrets (merge patches merged in) and refusing the writes `refused`
/// names (a quota), and a context with identity on that talks to it.
fn refusing_secrets(
    refused: fn(&Method, &str) -> bool,
) -> (Scripted, Arc<Mutex<HashMap<String, Value>>>, Context) {
    let kept: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let records = kept.clone();
    let api = Scripted::new(move |m, path, body| {
        if !path.contains("/secrets") {
            return None;
        }
        if refused(m, path) {
            return Some(forbidden("exceeded quota: secrets=0"));
        }
        let mut kept = records.lock().expect("records");
        keep_secret(&mut kept, m, path, body)
    });
    let ctx = identity_context(api.client());
    (api, kept, ctx)
}

/// Link Secrets (in the organization's namespace) refused.
fn link_refused(m: &Method, path: &str) -> bool {
    *m != Method::GET && path.contains(&format!("/namespaces/{NS}/"))
}

/// Red team of 3e1cdfe: the backoff after an undelivered link counts from when delivery failed,
/// not from when the reconcile that tried it began. Invitations go out one after another
/// (an SMTP attempt may take its 10 s timeout), so in a reconcile that has run longer than the
/// backoff — 30 members during a relay outage pass the 5-minute cap — every withdrawal is
/// stamped with a time whose backoff is already over, and the reconcile its write triggers
/// issues the link again at once: the spin the backoff was added to stop.
/// Here the reconcile began 400 s ago (its `now`); dave's link Secret is refused.
#[tokio::test]
async fn an_undelivered_link_waits_from_the_failure_not_from_the_reconcile_start() {
    use crate::identity::store::{Record, Store};
    // The organization's namespace: the link Secret is refused (a quota).
    let (_api, kept, ctx) = refusing_secrets(link_refused);
    let wall = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut w = acme();
    w.now = k8s_openapi::jiff::Timestamp::from_second(wall - 400).expect("now");
    let first = plan(&w, &ctx.config.settings);
    let w = applied(w, &first);
    let p = plan(&w, &ctx.config.settings);
    assert!(!p.identity.is_empty(), "an invitation is planned");
    let result = apply::apply(&ctx, &w, &p).await;
    assert!(result.is_err(), "the link Secret was refused: {result:?}");
    let name = Store::secret_name(NS, "dave@acme.example");
    let record: Record = {
        let kept = kept.lock().expect("records");
        let (_, v) = kept
            .iter()
            .find(|(k, _)| k.ends_with(&name))
            .expect("dave's record is stored");
        let raw = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            v["data"]["record"].as_str().expect("record"),
        )
        .expect("base64");
        serde_json::from_slice(&raw).expect("json")
    };
    assert!(record.invitation.is_none(), "withdrawn: {record:?}");
    let u = record.undelivered.expect("the failure is recorded");
    let wall = u64::try_from(wall).expect("wall");
    assert!(
        u.retry_at() > wall,
        "the failure just now (attempt {}) is stamped {} s ago: the next reconcile issues the \
         link again at once",
        u.attempts,
        wall - u.at
    );
}

// ---- Red team of b0372fa: statuses skipped with the invitation planned alongside them ----

/// A credential Secret holding `r`, as the API server answers it, by API path.
fn red_b0372fa_credential(r: &crate::identity::store::Record) -> (String, Value) {
    let name = crate::identity::store::Store::secret_name(NS, &r.email);
    (
        format!("/api/v1/namespaces/roster-system/secrets/{name}"),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": "roster-system", "resourceVersion": "1"},
               "data": {"record": base64::Engine::encode(
                   &base64::engine::general_purpose::STANDARD,
                   serde_json::to_vec(r).expect("json"))}}),
    )
}

/// The record kept for `email`, if any.
fn red_b0372fa_kept_record(
    kept: &HashMap<String, Value>,
    email: &str,
) -> Option<crate::identity::store::Record> {
    let name = crate::identity::store::Store::secret_name(NS, email);
    let (_, v) = kept.iter().find(|(k, _)| k.ends_with(&name))?;
    let raw = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        v["data"]["record"].as_str()?,
    )
    .ok()?;
    serde_json::from_slice(&raw).ok()
}

/// RFC 7386: objects merged key by key, `null` removes, anything else replaces.
fn merge(into: &mut Value, patch: &Value) {
    match (into.as_object_mut(), patch.as_object()) {
        (Some(o), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    o.remove(k);
                } else {
                    merge(o.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *into = patch.clone(),
    }
}

/// dave waits out the backoff of an undelivered link with his status written (Entitled, Viewer
/// of one and two; MFA required, 10 minutes' grace); then his project two is taken away and
/// three reconciles follow, each `now` 400 s after the last (a reconcile that outlasts the
/// 5-minute cap: 30 links timing out at 10 s each, as the red team of 3e1cdfe counted), the
/// Secret writes that `refused` names refused. The reconciles in which dave's status was
/// written, and the world after them (statuses only where the API server got them).
async fn red_b0372fa_outage(refused: fn(&Method, &str) -> bool) -> (Vec<bool>, World) {
    use crate::controller::credentials::IdentityAction;
    use crate::identity::store::{Record, Undelivered};
    let (api, kept, ctx) = refusing_secrets(refused);
    let settings = ctx.config.settings.clone();
    let wall = k8s_openapi::jiff::Timestamp::now().as_second();
    let at = |s: i64| k8s_openapi::jiff::Timestamp::from_second(s).expect("ts");
    let mut w = acme();
    w.now = at(wall - 100);
    if let Some(o) = w.org.as_mut() {
        o.spec.security.mfa.required = true;
        o.spec.security.mfa.grace_period = "10m".into();
    }
    let alice = Record {
        email: "alice@acme.example".into(),
        accepted_at: Some(1),
        totp_sealed: Some("sealed".into()),
        ..Default::default()
    };
    let dave = Record {
        email: "dave@acme.example".into(),
        undelivered: Some(Undelivered {
            at: u64::try_from(wall - 150).expect("wall"),
            attempts: 9,
        }),
        ..Default::default()
    };
    for r in [&alice, &dave] {
        w.credentials.insert(r.email.clone(), r.clone());
        let (path, secret) = red_b0372fa_credential(r);
        kept.lock().expect("records").insert(path, secret);
    }
    for _ in 0..3 {
        let p = plan(&w, &settings);
        assert!(p.identity.is_empty(), "dave waits: {:?}", p.identity);
        w = applied(w, &p);
    }
    assert!(
        plan(&w, &settings).membership_status.is_empty(),
        "settled before the change"
    );
    if let Some(d) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        d.spec.projects.retain(|g| g.name != "two");
        d.metadata.generation = Some(2);
    }
    let mut written = Vec::new();
    for k in 1..=3 {
        w.now = at(wall + 400 * k);
        let p = plan(&w, &settings);
        assert!(
            p.identity.iter().any(
                |a| matches!(a, IdentityAction::Invite { membership, .. } if membership == "dave")
            ),
            "reconcile {k}: dave's backoff is over: {:?}",
            p.identity
        );
        let q = red_b0372fa_apply_refused(&api, &ctx, &w, &p).await;
        written.push(q.membership_status.iter().any(|(n, _)| n == "dave"));
        w = applied(w, &q);
        let dave = red_b0372fa_kept_record(&kept.lock().expect("records"), "dave@acme.example")
            .expect("dave's record");
        w.credentials.insert(dave.email.clone(), dave);
    }
    (written, w)
}

/// What dave's stored status says, and which of roster's bindings name him.
/// Applies `p`, which a refused write must fail; the plan as far as the API server took it
/// (the statuses it got).
async fn red_b0372fa_apply_refused(api: &Scripted, ctx: &Context, w: &World, p: &Plan) -> Plan {
    let before = api.writes().len();
    let result = apply::apply(ctx, w, p).await;
    assert!(result.is_err(), "a write is refused: {result:?}");
    let writes: Vec<String> = api.writes()[before..].to_vec();
    let mut q = p.clone();
    q.membership_status.retain(|(n, _)| {
        writes
            .iter()
            .any(|x| x.starts_with("PATCH") && x.ends_with(&format!("/memberships/{n}/status")))
    });
    q
}

fn red_b0372fa_says(w: &World) -> String {
    let st = w
        .memberships
        .iter()
        .find(|m| m.name_any() == "dave")
        .and_then(|m| m.status.clone())
        .unwrap_or_default();
    let access: Vec<String> = st
        .access
        .iter()
        .map(|e| format!("{}={:?}", e.project, e.role))
        .collect();
    let entitled = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Entitled")
        .map(|c| c.status.clone());
    let bound: Vec<String> = w
        .rolebindings
        .iter()
        .filter(|rb| {
            rb.subjects
                .iter()
                .flatten()
                .any(|s| s.name.contains("dave@"))
        })
        .map(|rb| format!("{}/{}", rb.namespace().unwrap_or_default(), rb.name_any()))
        .collect();
    format!(
        "status: phase {:?}, access {access:?}, Entitled {entitled:?}, MFA {:?}; bound in {bound:?}",
        st.phase,
        st.mfa.map(|m| m.state)
    )
}

/// Red team of b0372fa (seen failing): while invitation links cannot be delivered (SMTP down,
/// the link Secret refused) in an organization whose reconcile outlasts the 5-minute backoff
/// cap, or while the credential store refuses writes (quota, admission policy, RBAC on
/// roster's namespace: no record, no backoff), a pending member's invitation is planned — and
/// fails — in every reconcile. The status planned with it must be written all the same: under
/// b0372fa it never was, and dave's status kept project two and Entitled=True after his
/// binding to two was gone and his MFA grace had run out (every binding gone).
#[tokio::test]
async fn red_b0372fa_an_outage_must_not_freeze_a_pending_member_s_status() {
    fn store_refused(m: &Method, path: &str) -> bool {
        *m != Method::GET && path.contains("/namespaces/roster-system/")
    }
    for (what, refused) in [
        (
            "link Secrets refused",
            link_refused as fn(&Method, &str) -> bool,
        ),
        ("credential store refused", store_refused),
    ] {
        let (written, w) = red_b0372fa_outage(refused).await;
        assert!(
            written.iter().any(|x| *x),
            "{what}: dave's status was written in none of {} reconciles ({written:?}); {}",
            written.len(),
            red_b0372fa_says(&w)
        );
    }
}

/// Red team of b0372fa (seen failing): a new member's first invitation fails (the link Secret
/// refused: the SMTP-down case); the reconcile publishes `AccessGranted` for dave but skips
/// his status, so the next reconcile — which writes it — finds no previous access and
/// publishes `AccessGranted` again. Every failed first invitation announces the grant twice
/// (and a persistent failure once per reconcile).
#[tokio::test]
async fn red_b0372fa_a_grant_is_announced_once_when_the_first_invitation_fails() {
    let (api, kept, ctx) = refusing_secrets(link_refused);
    let settings = ctx.config.settings.clone();
    let wall = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut w = acme();
    w.now = k8s_openapi::jiff::Timestamp::from_second(wall).expect("now");
    let granted = |p: &Plan| {
        p.events
            .iter()
            .filter(|e| {
                e.reason == "AccessGranted"
                    && e.target == super::plan::Target::Membership("dave".into())
            })
            .count()
    };
    let p = plan(&w, &settings);
    let mut announced = granted(&p);
    let q = red_b0372fa_apply_refused(&api, &ctx, &w, &p).await;
    w = applied(w, &q);
    for email in ["alice@acme.example", "dave@acme.example"] {
        if let Some(r) = red_b0372fa_kept_record(&kept.lock().expect("records"), email) {
            w.credentials.insert(email.into(), r);
        }
    }
    // The withdrawal's write triggers the next reconcile at once: dave waits out his backoff.
    w.now = k8s_openapi::jiff::Timestamp::from_second(wall + 1).expect("now");
    let p = plan(&w, &settings);
    assert!(p.identity.is_empty(), "backoff: {:?}", p.identity);
    announced += granted(&p);
    assert_eq!(
        announced, 1,
        "AccessGranted for dave published {announced} times"
    );
}

/// A link whose readers' binding could not be narrowed is replaced all the same, and at once,
/// under names of its own: the binding that still names the former reader opens only the old
/// link, which the replacement kills. (Red team 22: bob, no longer Admin of all of dave's
/// projects, stayed bound when the binding's update failed, and read the replacement, written
/// into the same Secret. Red team 23: the API server authorizes from its own cache, so even a
/// binding narrowed in time could let bob read a replacement written under the same name.)
/// Also when the cache did not show the binding yet, so that the narrowing write is a
/// creation; and the twin, where the binding is written.
#[tokio::test]
async fn a_replaced_link_is_written_under_names_no_former_reader_was_bound_to() {
    use crate::api::{OrgRole, ProjectRole};
    use crate::identity::store::{Invitation, Record};
    let old = crate::api::contract::invitation_link_name("dave", Some("aaaaaaaaaa"));
    for (binding_refused, cache_shows_binding) in [(true, true), (true, false), (false, true)] {
        let mut w = acme();
        let bob = |projects: &[(&str, ProjectRole)]| {
            Arc::new(member("bob", Some(OrgRole::Admin), projects))
        };
        w.memberships.push(bob(&[
            ("one", ProjectRole::Admin),
            ("two", ProjectRole::Admin),
        ]));
        w.credentials
            .extend(crate::fixtures::accepted(&["alice", "bob"]));
        let dave = w
            .memberships
            .iter()
            .find(|m| m.name_any() == "dave")
            .expect("dave")
            .clone();
        let pending = Record {
            email: "dave@acme.example".into(),
            membership_uid: dave.metadata.uid.clone(),
            invitation: Some(Box::new(Invitation {
                hash: "h1".into(),
                sent_at: 1,
                expires_at: u64::MAX,
                delivery: "Secret".into(),
                scope: Some(crate::access::invitation_scope(
                    w.org.as_ref().expect("org"),
                    &dave,
                )),
                readers: vec!["alice@acme.example".into(), "bob@acme.example".into()],
                link_id: Some("aaaaaaaaaa".into()),
            })),
            ..Default::default()
        };
        w.credentials
            .insert("dave@acme.example".into(), pending.clone());
        let settings = Settings {
            identity: true,
            ..Settings::default()
        };
        let first = plan(&w, &settings);
        let mut w = applied(w, &first);
        assert!(
            w.rolebindings.iter().any(|rb| rb.name_any() == old),
            "bob and alice read dave's link"
        );
        // bob no longer administers project two: he may not read dave's link.
        w.memberships.retain(|m| m.name_any() != "bob");
        w.memberships.push(bob(&[("one", ProjectRole::Admin)]));
        if !cache_shows_binding {
            w.rolebindings.retain(|rb| rb.name_any() != old);
        }
        let p = plan(&w, &settings);
        assert!(
            p.rolebindings.iter().any(|rb| rb.name_any() == old),
            "the binding is narrowed: {:?}",
            p.rolebindings
        );
        let (record_path, record) = red_b0372fa_credential(&pending);
        let old_path = format!("/api/v1/namespaces/{NS}/secrets/{old}");
        let secrets = Arc::new(Mutex::new(HashMap::from([
            (record_path, record),
            (
                old_path.clone(),
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": old, "namespace": NS, "resourceVersion": "1"},
                       "data": {"link": "b2xk"}}),
            ),
        ])));
        let kept = secrets.clone();
        let rb_path = format!("/rolebindings/{old}");
        let api = Scripted::new(move |m, path, body| {
            if binding_refused && *m == Method::PATCH && path.ends_with(&rb_path) {
                return Some(forbidden("exceeded quota"));
            }
            if !path.contains("/secrets") {
                return None;
            }
            keep_secret(&mut kept.lock().expect("secrets"), m, path, body)
        });
        let ctx = identity_context(api.client());
        let result = apply::apply(&ctx, &w, &p).await;
        assert_eq!(result.is_err(), binding_refused, "{result:?}");
        let log = api.log.lock().expect("log").clone();
        assert!(
            !log.iter().any(|(m, path)| *m != Method::DELETE
                && *m != Method::GET
                && (path.ends_with(&format!("/secrets/{old}"))
                    || path.ends_with(&format!("/roles/{old}")))),
            "the new link was written where bob may still be bound: {log:#?}"
        );
        let kept = secrets.lock().expect("secrets");
        let record = red_b0372fa_kept_record(&kept, "dave@acme.example").expect("dave's record");
        let issued = record.invitation.expect("a new link");
        assert_eq!(issued.readers, vec!["alice@acme.example".to_string()]);
        let new = issued.secret_name("dave").expect("a Secret link");
        assert_ne!(new, old);
        assert!(
            kept.contains_key(&format!("/api/v1/namespaces/{NS}/secrets/{new}")),
            "the new link is in {new}: {:?}",
            kept.keys()
        );
        assert!(
            !kept.contains_key(&old_path),
            "the replaced link's Secret is deleted"
        );
        assert!(
            log.iter()
                .any(|(m, path)| *m == Method::DELETE && path.ends_with(&format!("/roles/{old}"))),
            "and its Role: {log:#?}"
        );
        assert!(
            log.iter()
                .any(|(m, path)| *m == Method::PATCH && path.ends_with(&format!("/roles/{new}"))),
            "the new link has a Role of its own: {log:#?}"
        );
    }
}

/// (Identity, on this file's scripted API server.) An enrolment ticket confirms only the
/// pending seed of the record it was issued for: when the address's record is another
/// Membership's by now (deleted and declared again) or of a later generation, nothing is
/// enrolled. Red team 26: through a cache that had not seen the change, an old ticket
/// confirmed the new Membership's seed (the compare-and-swap re-read the record and took it).
#[tokio::test]
async fn an_enrolment_ticket_confirms_only_its_own_record_s_seed() {
    use crate::identity::store::Record;
    let now = 1_800_000_000;
    let org = NS;
    let email = "dave@acme.example";
    let record = Record {
        email: email.into(),
        membership_uid: Some("uid-2".into()),
        generation: 4,
        accepted_at: Some(1),
        ..Default::default()
    };
    for (ticket, allowed) in [
        (("uid-1", 4), false),
        (("uid-2", 3), false),
        (("uid-2", 4), true),
    ] {
        let (path, stored) = red_b0372fa_credential(&record);
        let kept = Arc::new(Mutex::new(HashMap::from([(path, stored)])));
        let k = kept.clone();
        let api = Scripted::new(move |m, path, body| {
            keep_secret(&mut k.lock().expect("secrets"), m, path, body)
        });
        let id = identity_on(api.client());
        let seed = id.begin_enrolment(org, email).await.expect("enrolment");
        let result = id
            .confirm_enrolment(org, email, &seed.code_at(now), ticket, now)
            .await;
        assert_eq!(result.is_ok(), allowed, "{ticket:?}: {result:?}");
        let enrolled = red_b0372fa_kept_record(&kept.lock().expect("secrets"), email)
            .is_some_and(|r| r.totp_sealed.is_some());
        assert_eq!(enrolled, allowed, "{ticket:?}");
    }
}

/// Events of the same object and reason with another note are Events of their own (the
/// recorder folds same-keyed Events into a series that keeps the first note): the second held
/// change's Event, with its fingerprint, was shown with the first's note (red team 27's
/// cluster test). The same note again is one series.
#[tokio::test]
async fn an_event_with_another_note_is_not_folded_into_an_earlier_one() {
    use crate::controller::plan::{PlannedEvent, Target};
    let log: Arc<Mutex<Vec<(Method, String)>>> = Arc::default();
    let seen = log.clone();
    let api = Scripted::new(move |m, path, body| {
        if (path.ends_with("/events") || path.contains("/events/"))
            && let Ok(mut s) = seen.lock()
        {
            s.push((
                m.clone(),
                body["note"].as_str().unwrap_or_default().to_string(),
            ));
        }
        None
    });
    let ctx = context(api.client());
    let w = acme();
    let held = |note: &str| Plan {
        events: vec![PlannedEvent {
            target: Target::Organization(NS.into()),
            warning: true,
            reason: "AccessRemovalsHeld",
            note: note.into(),
        }],
        ..Plan::default()
    };
    for note in [
        "first held change",
        "second held change",
        "second held change",
    ] {
        apply::apply(&ctx, &w, &held(note)).await.expect("applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = log.lock().expect("log").clone();
    let created: Vec<&str> = log
        .iter()
        .filter(|(m, _)| *m == Method::POST)
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(
        created,
        ["first held change", "second held change"],
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|(m, _)| *m == Method::PATCH).count(),
        1,
        "the same note again is a series: {log:?}"
    );
}

fn invalid(message: &str) -> (StatusCode, Value) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Invalid",
               "code": 422, "message": message, "metadata": {}}),
    )
}

fn mfa_of(w: &World, name: &str) -> crate::api::MfaStatus {
    w.memberships
        .iter()
        .find(|m| m.name_any() == name)
        .and_then(|m| m.status.as_ref())
        .and_then(|s| s.mfa.clone())
        .expect("mfa status")
}

/// Red team 32: one refused write anywhere in a reconcile kept the Organization's status
/// (and with it the MfaRequired condition, the time MFA became required) from being written,
/// and `report_failure` wrote the old conditions back. Every later plan took its own now as
/// that time: no grace period ended while the failure lasted, and every member's status was
/// written again on each retry. A project Admin could make the failure last: replace roster's
/// `roster-viewer` binding in their project namespace by one of the same name, another
/// roleRef and no roster labels (invisible to the cache), and roster's apply of it is refused
/// with 422 "cannot change roleRef" on every reconcile.
#[tokio::test]
async fn a_refused_write_does_not_stop_the_mfa_grace_clock() {
    let mut w = {
        let w = acme();
        let p = plan(&w, &Settings::default());
        let w = applied(w, &p);
        let p = plan(&w, &Settings::default());
        applied(w, &p)
    };
    let t0 = ts("2026-01-10T00:00:00Z");
    w.org.as_mut().expect("org").spec.security.mfa.required = true;
    // roster's binding, swapped by the project Admin: no longer in the (label-selected) cache.
    w.rolebindings.retain(|rb| {
        !(rb.metadata.namespace.as_deref() == Some("acme-one") && rb.name_any() == "roster-viewer")
    });
    let mut seen = Vec::new();
    for day in 0..5i64 {
        w.now = t0
            .checked_add(k8s_openapi::jiff::SignedDuration::from_hours(24 * day))
            .expect("time");
        let org_writes: Arc<Mutex<Vec<Value>>> = Arc::default();
        let keep = org_writes.clone();
        let api = Scripted::new(move |m, path, body| {
            if path.ends_with("/organizations/acme/status") {
                keep.lock().expect("lock").push(body.clone());
            }
            (*m == Method::PATCH
                && path.ends_with("/namespaces/acme-one/rolebindings/roster-viewer"))
            .then(|| invalid("roleRef: Invalid value: cannot change roleRef"))
        });
        let ctx = context(api.client());
        let p = plan(&w, &ctx.config.settings);
        let err = apply::apply(&ctx, &w, &p)
            .await
            .expect_err("refused binding");
        apply::report_failure(&ctx, &w, &err).await;
        // What the API server holds now: the plan's writes, but the Organization's status is
        // the one report_failure wrote.
        let before = w.org.as_ref().and_then(|o| o.status.clone());
        w = applied(w, &p);
        // The refused binding was not written: the cache still shows no roster-viewer there.
        w.rolebindings.retain(|rb| {
            !(rb.metadata.namespace.as_deref() == Some("acme-one")
                && rb.name_any() == "roster-viewer")
        });
        let stored = org_writes
            .lock()
            .expect("lock")
            .last()
            .and_then(|b| serde_json::from_value(b["status"].clone()).ok())
            .or(before);
        w.org.as_mut().expect("org").status = stored;
        let mfa = mfa_of(&w, "dave");
        seen.push((day, mfa.state, mfa.deadline.map(|d| d.0.to_string())));
    }
    // dave never enrolled: 72 h after MFA became required (t0) he must be Overdue.
    let (_, state, _) = seen.last().cloned().expect("seen");
    assert_eq!(
        state,
        crate::api::MfaState::Overdue,
        "dave's MFA status on days 0..4 after MFA became required: {seen:#?}"
    );
}

/// Red team 32: a status planned for one incarnation of an object never lands on another (a
/// Membership deleted and declared again under its name between observe and write): every
/// status names the UID it was planned for, a precondition to the API server. Its answer for
/// a namesake (422, metadata.uid is immutable) or for none (409, uid mismatch) is not a
/// failure: the new member's own reconcile plans its status.
#[tokio::test]
async fn a_status_write_names_the_incarnation_it_was_planned_for() {
    let mut w = acme();
    for (i, m) in w.memberships.iter_mut().enumerate() {
        Arc::make_mut(m).metadata.uid = Some(format!("uid-{i}"));
    }
    for (i, p) in w.projects.iter_mut().enumerate() {
        p.metadata.uid = Some(format!("project-uid-{i}"));
    }
    let bodies: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let keep = bodies.clone();
    let api = Scripted::new(move |m, path, body| {
        if *m == Method::PATCH && path.ends_with("/status") {
            keep.lock()
                .expect("lock")
                .push((path.to_string(), body.clone()));
        }
        if path.ends_with("/memberships/alice/status") {
            return Some(invalid(
                "Membership.roster.dev \"alice\" is invalid: metadata.uid: Invalid value: \"uid-0\": field is immutable",
            ));
        }
        if path.ends_with("/memberships/dave/status") {
            return Some((
                StatusCode::CONFLICT,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Conflict",
                       "code": 409, "message": "Operation cannot be fulfilled on memberships.roster.dev \"dave\": uid mismatch: the provided object specified uid uid-1, and no existing object was found", "metadata": {}}),
            ));
        }
        None
    });
    let ctx = context(api.client());
    let p = plan(&w, &ctx.config.settings);
    apply::apply(&ctx, &w, &p)
        .await
        .expect("a namesake's or a gone object's status is nothing to write");
    let bodies = bodies.lock().expect("lock").clone();
    let members: Vec<&(String, Value)> = bodies
        .iter()
        .filter(|(path, _)| path.contains("/memberships/"))
        .collect();
    for name in ["alice", "dave"] {
        assert!(
            members
                .iter()
                .any(|(p, _)| p.contains(&format!("/memberships/{name}/"))),
            "{name}'s status planned and sent: {bodies:?}"
        );
    }
    for (path, b) in &bodies {
        let uid = &b["metadata"]["uid"];
        if path.contains("/memberships/") {
            let i = w
                .memberships
                .iter()
                .position(|m| path.contains(&format!("/memberships/{}/", m.name_any())))
                .expect("a member");
            assert_eq!(uid, &json!(format!("uid-{i}")), "{path}: {b}");
        } else {
            assert!(uid.is_string(), "{path}: no uid precondition in {b}");
        }
    }
    // Anything else refused is still a failure.
    let api = Scripted::new(|_, path, _| {
        path.ends_with("/memberships/alice/status")
            .then(|| invalid("status.phase: Unsupported value: \"Nope\""))
    });
    let ctx = context(api.client());
    assert!(apply::apply(&ctx, &w, &p).await.is_err());
}

/// A link replaced (a resend during a hold): the new link's binding is written before the
/// old one's deletion. The other way round, a reconcile planned from a watch that had shown
/// the deletion and not yet the creation saw no binding of the member's links at all, and a
/// held change bound the new link to the owner alone: Admin carl could not read it until the
/// hold ended (cluster `members::a_link_resent_while_a_change_is_held_can_be_read`, once in
/// CI). Another stale binding is still deleted first; the old link's binding waits for a
/// reconcile that writes the new one, unless it names a reader the new one does not (red
/// team 44).
#[tokio::test]
async fn a_replaced_link_s_binding_is_written_before_the_old_one_goes() {
    use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
    let link = |name: &str| RoleBinding {
        metadata: kube::core::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: Some(
                [(
                    crate::api::contract::MEMBERSHIP_LABEL.to_string(),
                    "dave".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "roster:acme:alice@acme.example".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }]),
    };
    let (old, new) = (
        "roster-invitation-dave-0000000000",
        "roster-invitation-dave-1111111111",
    );
    let stale = RoleBinding {
        metadata: kube::core::ObjectMeta {
            name: Some("roster-viewer".into()),
            namespace: Some("acme-one".into()),
            ..Default::default()
        },
        ..link("roster-viewer")
    };
    let mut w = acme();
    w.rolebindings = vec![link(old), stale];
    let p = Plan {
        rolebindings: vec![link(new)],
        delete_rolebindings: vec![
            (NS.to_string(), old.to_string()),
            ("acme-one".to_string(), "roster-viewer".to_string()),
        ],
        ..Default::default()
    };
    let api = Scripted::ok();
    let ctx = context(api.client());
    apply::apply(&ctx, &w, &p).await.expect("applied");
    let writes = api.writes();
    assert_eq!(
        writes.iter().filter(|w| w.contains(new)).count(),
        1,
        "the new link's binding written once: {writes:#?}"
    );
    let created = position(
        &writes,
        &format!("PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/{new}"),
    );
    let deleted = position(
        &writes,
        &format!("DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/{old}"),
    );
    assert!(
        created < deleted,
        "the old link's binding went first: {writes:#?}"
    );
    let removal = position(
        &writes,
        "DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/acme-one/rolebindings/roster-viewer",
    );
    assert!(removal < created, "a removal of access waited: {writes:#?}");

    // The new binding refused: the old one stays for a reconcile that writes the new one
    // (deleted all the same, the next reconcile saw neither again).
    let api = Scripted::new(move |method, path, _| {
        (*method == Method::PATCH && path.ends_with(new))
            .then(|| forbidden("rolebindings is forbidden"))
    });
    let ctx = context(api.client());
    let err = apply::apply(&ctx, &w, &p)
        .await
        .expect_err("the new binding fails");
    assert_eq!(crate::Reason::reason(&err), "Forbidden", "{err}");
    let writes = api.writes();
    assert!(
        !writes
            .iter()
            .any(|w| w.starts_with("DELETE") && w.contains(old)),
        "the old link's binding went with no replacement written: {writes:#?}"
    );
    position(
        &writes,
        "DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/acme-one/rolebindings/roster-viewer",
    );

    // ... unless the old one names someone the new one does not (a reader cut off since):
    // then it goes all the same.
    if let Some(subjects) = w.rolebindings[0].subjects.as_mut() {
        subjects.push(Subject {
            kind: "User".into(),
            name: "roster:acme:carl@acme.example".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        });
    }
    let api = Scripted::new(move |method, path, _| {
        (*method == Method::PATCH && path.ends_with(new))
            .then(|| forbidden("rolebindings is forbidden"))
    });
    let ctx = context(api.client());
    apply::apply(&ctx, &w, &p)
        .await
        .expect_err("the new binding fails");
    let writes = api.writes();
    position(
        &writes,
        &format!("DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/{old}"),
    );
}
