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

// The guard orders this test against the API server restart test; each test has a runtime of
// its own, so holding it across an await blocks nothing else.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_count_exactly_to_the_limit() {
    let _api = shared();
    let c = cluster();
    let own_ns = c.namespace("roster-system");
    let store = Store::new(c.client().await, &own_ns);
    // Small argon2 parameters: this test is about counting, not hashing cost.
    let hasher = Hasher::new(1024, 1, 1, 4).expect("params");
    let phc = hasher
        .hash(&Secret::new("correct horse battery staple"))
        .await
        .expect("hash");
    let (org, email) = ("acme", "bob@acme.example");
    store
        .create(
            org,
            email,
            &Record {
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
    let attempt = |password: &'static str, now: u64| {
        let (store, keys, policy) = (&store, &keys, &policy);
        async move {
            login::attempt(
                store,
                org,
                email,
                &Secret::new(password),
                None,
                keys,
                policy,
                now,
            )
            .await
        }
    };
    let outcomes = join_all((0..50).map(|_| attempt("not the password", now))).await;
    let outcomes: Vec<Attempt> = outcomes.into_iter().map(|o| o.expect("attempt")).collect();
    let counted = outcomes
        .iter()
        .filter(|o| matches!(o, Attempt::Failed { .. }))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Attempt::Locked { .. }))
        .count();
    assert_eq!((counted, refused), (10, 40), "{outcomes:?}");
    let record = store.get(org, email).await.expect("record");
    assert_eq!((record.failed, record.locked_until), (10, Some(now + 900)));

    // Locked means locked: even the right password is refused, and not counted.
    assert_eq!(
        attempt("correct horse battery staple", now + 1)
            .await
            .expect("attempt"),
        Attempt::Locked { until: now + 900 }
    );
    store.unlock(org, email).await.expect("unlock");
    assert!(matches!(
        attempt("correct horse battery staple", now + 2)
            .await
            .expect("attempt"),
        Attempt::Accepted { .. }
    ));
    assert_eq!(store.get(org, email).await.expect("record").failed, 0);
}
