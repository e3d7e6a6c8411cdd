//! The identity service: what the controller asks of identity (invite, unlock, reset MFA,
//! forget) and what the HTTP endpoints build on (accept, enrol). It owns the keys, the
//! credential store, the mailer and the security log.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};

use super::audit::{Entry, SecurityLog};
use super::mail::Mailer;
use super::password::Hasher;
use super::store::{Invitation, Record, Store};
use super::totp::Seed;
use super::{Secret, invitation, seal, token};
use crate::api::Membership;
use crate::api::contract::{
    FIELD_MANAGER, INVITATION_SECRET_TYPE, MANAGED_BY, MANAGER, MEMBERSHIP_LABEL,
    ORGANIZATION_LABEL, Request,
};

/// The metadata of a link's Secret and Role: labelled for the member, owned by the Membership
/// (deleting it deletes them).
fn link_meta(m: &Membership, name: &str) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(BTreeMap::from([
            (MANAGED_BY.into(), MANAGER.into()),
            (ORGANIZATION_LABEL.into(), m.namespace().unwrap_or_default()),
            (MEMBERSHIP_LABEL.into(), m.name_any()),
        ])),
        owner_references: m.controller_owner_ref(&()).map(|r| vec![r]),
        ..Default::default()
    }
}

fn link_apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// A new link's id: 40 random bits in hex, enough that a member's links never share names.
fn new_link_id() -> String {
    super::random::<5>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// roster's keys: the AES key sealing TOTP seeds and the HMAC key signing tokens. Kept in one
/// Secret in roster's own namespace, made on first start.
pub const KEYS_SECRET: &str = "roster-identity-keys";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Store(#[from] super::store::Error),
    #[error("{0}")]
    Mail(#[from] super::mail::Error),
    #[error("cannot write the invitation Secret: {0}")]
    InvitationSecret(kube::Error),
    #[error("cannot load or create roster's identity keys (Secret {KEYS_SECRET}): {0}")]
    Keys(String),
    #[error("{0}")]
    Invitation(#[from] invitation::Error),
    #[error("{0}")]
    Password(#[from] super::password::Error),
    #[error("{0}")]
    Totp(#[from] super::totp::Error),
    #[error("no enrolment in progress; start again from the login page")]
    NoEnrolment,
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Store(e) => e.reason(),
            Error::Mail(e) => e.reason(),
            Error::InvitationSecret(_) => "InvitationSecretFailed",
            Error::Keys(_) => "IdentityKeysUnavailable",
            Error::Invitation(e) => e.reason(),
            Error::Password(e) => e.reason(),
            Error::Totp(e) => e.reason(),
            Error::NoEnrolment => "NoEnrolment",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn stored(inv: &Invitation) -> invitation::Stored {
    invitation::Stored {
        hash: inv.hash.clone(),
        expires_at: inv.expires_at,
    }
}

/// Everything identity does, as operations: the controller's (invite, unlock, reset MFA,
/// forget), the pages' and API's (accept, enrol, log in, tokens), the log. Its keys, store and
/// mailer are its own; nothing reaches around it to them.
pub struct Identity {
    store: Store,
    hasher: Hasher,
    seal: seal::Key,
    signer: token::Signer,
    /// Where members reach the identity pages, e.g. https://id.acme.example.
    public_url: String,
    mailer: Option<Mailer>,
    log: SecurityLog,
    client: Client,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// What an invitation is issued for.
#[derive(Clone, Copy, Debug)]
pub struct Issue<'a> {
    pub ttl_seconds: u64,
    /// The resend request it answers, if any.
    pub nonce: Option<&'a str>,
    /// The member's role and projects (`access::invitation_scope`): the link opens nothing
    /// once they change.
    pub scope: &'a str,
    /// Who may read the link (Secret delivery), as planned.
    pub readers: &'a [String],
    pub now: u64,
}

/// The change `transfer_ownership` writes. The owner was checked on roster's cached
/// Organization, and roster writes as an identity the webhook trusts with ownership: without
/// the version, a former owner could move ownership again while the cache still named them
/// (a watch outage after a GitOps transfer; red team 19b).
pub fn ownership_patch(new_owner: &str, checked_version: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"resourceVersion": checked_version},
        "spec": {"owner": new_owner},
    })
}

/// How an invitation went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Email,
    Secret,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Email => "Email",
            Delivery::Secret => "Secret",
        }
    }
}

impl Identity {
    pub fn new(
        client: Client,
        namespace: &str,
        keys: Keys,
        hasher: Hasher,
        public_url: String,
        mailer: Option<Mailer>,
        log: SecurityLog,
    ) -> Identity {
        Identity {
            store: Store::new(client.clone(), namespace),
            hasher,
            seal: keys.seal,
            signer: keys.signer,
            public_url: public_url.trim_end_matches('/').to_string(),
            mailer,
            log,
            client,
        }
    }

    /// The accept link for a token.
    /// Reads credentials through the controller's watch (see `Store::with_cache`).
    pub fn with_credential_cache(
        mut self,
        cache: crate::cache::Store<crate::cache::Credential>,
    ) -> Identity {
        self.store = self.store.with_cache(cache);
        self
    }

    pub fn accept_link(&self, org: &str, membership: &str, token: &Secret) -> Secret {
        Secret::new(format!(
            "{}/accept?org={org}&member={membership}&token={}",
            self.public_url,
            token.expose()
        ))
    }

    /// Issues a new invitation (a new member, or a resend: the old link stops working) and
    /// delivers it; `None` when there is nothing to do because the member has accepted.
    /// `nonce` is the resend request being handled, if any.
    ///
    /// An accepted member never gets a new link, even from a resend planned before the
    /// acceptance was seen: the check runs on the record before delivery and again inside
    /// the compare-and-swap that stores the link (so a password can never be set twice).
    pub async fn invite(&self, m: &Membership, issue: &Issue<'_>) -> Result<Option<Delivery>> {
        let Issue {
            ttl_seconds,
            nonce,
            scope,
            readers,
            now,
        } = *issue;
        let org = m.namespace().unwrap_or_default();
        let name = m.name_any();
        let email = m.spec.email.as_str();
        let accepted = |r: &Record| r.belongs_to(m) && r.accepted_at.is_some();
        let exists = match self.store.get(&org, email).await {
            Ok(r) if accepted(&r) => return Ok(None),
            Ok(_) => true,
            Err(super::store::Error::NotFound) => false,
            Err(e) => return Err(e.into()),
        };
        let (token, stored) = invitation::issue(now, ttl_seconds);
        let link = self.accept_link(&org, &name, &token);
        let expires = rfc3339(stored.expires_at);
        let delivery = match self.mailer {
            Some(_) => Delivery::Email,
            None => Delivery::Secret,
        };
        let invitation = Invitation {
            hash: stored.hash,
            sent_at: now,
            expires_at: stored.expires_at,
            delivery: delivery.as_str().into(),
            scope: Some(scope.to_string()),
            readers: readers.to_vec(),
            link_id: (delivery == Delivery::Secret).then(new_link_id),
        };
        // The link this one replaces, if it was a Secret: deleted once this one is out.
        let mut replaced: Option<String> = None;
        let created = m
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| u64::try_from(t.0.as_second()).ok());
        // A record of a deleted namesake is replaced whole.
        let mut invited = |r: Option<&Record>| {
            let mut next = match r {
                Some(r) if r.belongs_to(m) => r.clone(),
                _ => Record {
                    email: email.to_string(),
                    membership_uid: m.metadata.uid.clone(),
                    ..Default::default()
                },
            };
            // When the address first joined: kept from any record of it (a deleted
            // namesake's, a tombstone), else this Membership's creation.
            next.first_joined = [r.and_then(Record::grace_from), next.first_joined, created]
                .into_iter()
                .flatten()
                .min();
            // A delivered invitation before this one ends a run of failed ones.
            if next.invitation.is_some() {
                next.undelivered = None;
            }
            replaced = next.invitation.as_ref().and_then(|i| i.secret_name(&name));
            next.invitation = Some(Box::new(invitation.clone()));
            if let Some(n) = nonce {
                next.handled
                    .insert(Request::ResendInvitation.kind().into(), n.to_string());
            }
            next
        };
        // The link's Role before its record: the controller binds the link's readers to it as
        // soon as it sees the record, and a RoleBinding to a Role that does not exist yet is
        // refused. Alone it opens nothing.
        let secret_name = invitation.secret_name(&name);
        if let Some(secret) = &secret_name {
            self.write_link_role(m, secret).await?;
        }
        // Stored first, delivered second: a link is never out before it opens anything (a
        // member clicking the moment it arrives found "Invitation not valid"). A member without
        // a record gets it in one write.
        let stored = async {
            if !exists && self.store.create(&org, email, &invited(None)).await? {
                return Ok(true);
            }
            self.store
                .update(&org, email, |r| {
                    if accepted(r) {
                        return (None, false);
                    }
                    (Some(invited(Some(r))), true)
                })
                .await
        }
        .await;
        match stored {
            Ok(true) => {}
            // Accepted meanwhile: nothing was stored or sent, and the Role opens nothing.
            Ok(false) => {
                if let Some(secret) = &secret_name {
                    self.delete_link_secret(&org, secret).await;
                }
                return Ok(None);
            }
            // Perhaps stored all the same (a write that timed out): the Role stays, or the
            // link's readers could never be bound to it. Alone it opens nothing, and it goes
            // with the Membership.
            Err(e) => return Err(e.into()),
        }
        let delivered = match (&self.mailer, &secret_name) {
            (Some(mailer), _) => mailer
                .send_invitation(email, &org, &link, &expires)
                .await
                .map_err(Error::from),
            (None, Some(secret)) => self.write_link_secret(m, secret, &link, &expires).await,
            (None, None) => Ok(()),
        };
        // The replaced link no longer opens anything (its hash is gone from the record): its
        // Secret goes, delivered or not.
        if let Some(old) = replaced.filter(|old| Some(old) != secret_name.as_ref()) {
            self.delete_link_secret(&org, &old).await;
        }
        if let Err(e) = delivered {
            if let Some(secret) = &secret_name {
                self.delete_link_secret(&org, secret).await;
            }
            // Stamped now, not with the reconcile's start: a delivery can take an SMTP timeout
            // and a reconcile many of them, and a stamp already past its backoff let the
            // reconcile the withdrawal triggers send again at once (red team, 3e1cdfe).
            let failed_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(now, |d| d.as_secs());
            self.withdraw(&org, email, &invitation.hash, failed_at)
                .await;
            return Err(e);
        }
        self.log.record(
            Entry::new(&org, Some(email), "InvitationSent")
                .detail(format!("by {}, expires {expires}", delivery.as_str())),
        );
        Ok(Some(delivery))
    }

    /// Clears an invitation whose link could not be delivered: nobody holds it, and a new one
    /// is issued after a backoff (`Undelivered`). Not the invitation it replaced: that one was
    /// replaced for a reason (expired, resent, its rights or its readers changed), so it stays
    /// closed.
    async fn withdraw(&self, org: &str, email: &str, hash: &str, now: u64) {
        let cleared = self
            .store
            .update(org, email, |r| {
                if r.invitation.as_ref().is_none_or(|i| i.hash != hash) {
                    return (None, ());
                }
                let mut next = r.clone();
                next.invitation = None;
                next.undelivered = Some(super::store::Undelivered {
                    at: now,
                    attempts: r.undelivered.map_or(1, |u| u.attempts.saturating_add(1)),
                });
                (Some(next), ())
            })
            .await;
        if let Err(e) = cleared {
            // Stored and undelivered: it expires, or a resend request replaces it.
            tracing::error!(namespace = org, error = %e, "an invitation that was not delivered stays stored");
        }
    }

    /// The link Secret `name` in the organization's namespace, readable through its Role
    /// alone (`write_link_role`; the controller binds it to exactly those who may: see
    /// `invitation_readers`): roster's organization roles give no Secrets.
    async fn write_link_secret(
        &self,
        m: &Membership,
        name: &str,
        link: &Secret,
        expires: &str,
    ) -> Result<()> {
        let org = m.namespace().unwrap_or_default();
        let secret = KubeSecret {
            metadata: link_meta(m, name),
            type_: Some(INVITATION_SECRET_TYPE.into()),
            data: Some(BTreeMap::from([
                ("link".into(), ByteString(link.expose().as_bytes().to_vec())),
                ("email".into(), ByteString(m.spec.email.as_bytes().to_vec())),
                ("expiresAt".into(), ByteString(expires.as_bytes().to_vec())),
            ])),
            ..Default::default()
        };
        Api::<KubeSecret>::namespaced(self.client.clone(), &org)
            .patch(name, &link_apply(), &Patch::Apply(&secret))
            .await
            .map_err(Error::InvitationSecret)?;
        Ok(())
    }

    /// The Role that grants `get` on link Secret `name` (see `write_link_secret`).
    async fn write_link_role(&self, m: &Membership, name: &str) -> Result<()> {
        let org = m.namespace().unwrap_or_default();
        let role = Role {
            metadata: link_meta(m, name),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["secrets".into()]),
                resource_names: Some(vec![name.to_string()]),
                verbs: vec!["get".into()],
                ..Default::default()
            }]),
        };
        Api::<Role>::namespaced(self.client.clone(), &org)
            .patch(name, &link_apply(), &Patch::Apply(&role))
            .await
            .map_err(Error::InvitationSecret)?;
        Ok(())
    }

    /// Deletes a link's Secret and its Role (best effort: the link no longer opens anything,
    /// and the Membership's deletion takes both with it).
    async fn delete_link_secret(&self, org: &str, name: &str) {
        let secrets: Api<KubeSecret> = Api::namespaced(self.client.clone(), org);
        let roles: Api<Role> = Api::namespaced(self.client.clone(), org);
        for r in [
            secrets.delete(name, &Default::default()).await.map(|_| ()),
            roles.delete(name, &Default::default()).await.map(|_| ()),
        ] {
            match r {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::warn!(namespace = org, link = name, error = %e, "cannot delete an invitation link that no longer opens anything")
                }
            }
        }
    }

    /// The record behind an accept link, if the link is valid now for Membership `m` with the
    /// rights `scope` it has now (`access::invitation_scope`).
    pub async fn check_invitation(
        &self,
        m: &Membership,
        scope: &str,
        token: &str,
        now: u64,
    ) -> Result<Record> {
        let org = m.namespace().unwrap_or_default();
        let record = match self.store.get(&org, &m.spec.email).await {
            Ok(r) => r,
            Err(super::store::Error::NotFound) => return Err(invitation::Error::Unknown.into()),
            Err(e) => return Err(e.into()),
        };
        match &record.invitation {
            Some(inv)
                if record.belongs_to(m)
                    && record.accepted_at.is_none()
                    && inv.scope.as_deref() == Some(scope) =>
            {
                invitation::check(token, &stored(inv), now)?;
                Ok(record)
            }
            _ => Err(invitation::Error::Unknown.into()),
        }
    }

    /// Accepts an invitation for Membership `m` as the caches hold it now (the caller has
    /// checked that it is in good standing). The token is checked again on the latest record
    /// inside the compare-and-swap (single use; never a second time once accepted; never for
    /// a record of a deleted namesake), then the password is set and the invitation closed.
    pub async fn accept(
        &self,
        m: &Membership,
        scope: &str,
        token: &str,
        password: &Secret,
        min_length: u32,
        now: u64,
    ) -> Result<()> {
        let org = m.namespace().unwrap_or_default();
        let email = m.spec.email.as_str();
        self.check_invitation(m, scope, token, now).await?;
        super::password::check_new(password, min_length, &[email, &org])?;
        let phc = self.hasher.hash(password).await?;
        let used = self
            .store
            .update(&org, email, |r| {
                let valid = r.belongs_to(m)
                    && r.accepted_at.is_none()
                    && r.invitation
                        .as_ref()
                        .is_some_and(|inv| invitation::check(token, &stored(inv), now).is_ok());
                if !valid {
                    return (None, None);
                }
                let mut next = r.clone();
                next.password_hash = Some(phc.clone());
                next.link_readers = r.invitation.as_ref().map(|inv| inv.link_readers());
                next.accepted_link = r.invitation.as_ref().and_then(|inv| inv.accepted_as());
                next.invitation = None;
                // Failures before there was a password (records from before they stopped
                // counting) are nobody's: the member starts unlocked.
                next.failed = 0;
                next.locked_until = None;
                next.accepted_at = Some(now);
                next.generation += 1;
                let link = r
                    .invitation
                    .as_ref()
                    .and_then(|i| i.secret_name(&m.name_any()));
                (Some(next), Some(link))
            })
            .await?;
        let Some(link) = used else {
            return Err(invitation::Error::Unknown.into());
        };
        if let Some(link) = link {
            self.delete_link_secret(&org, &link).await;
        }
        self.log
            .record(Entry::new(&org, Some(email), "InvitationAccepted"));
        Ok(())
    }

    /// Starts (or restarts) TOTP enrolment: a new seed, sealed, pending until confirmed.
    pub async fn begin_enrolment(&self, org: &str, email: &str) -> Result<Seed> {
        let seed = Seed::generate();
        let sealed = self
            .seal
            .seal(seed.as_bytes(), &Store::secret_name(org, email));
        self.store
            .update(org, email, |r| {
                let mut next = r.clone();
                next.totp_pending = Some(sealed.clone());
                (Some(next), ())
            })
            .await?;
        Ok(seed)
    }

    /// The pending seed (to show the same QR code again after a wrong confirmation code).
    pub fn pending_seed(&self, org: &str, email: &str, r: &Record) -> Option<Seed> {
        let sealed = r.totp_pending.as_ref()?;
        let bytes = self
            .seal
            .open(sealed, &Store::secret_name(org, email))
            .ok()?;
        Seed::from_bytes(&bytes).ok()
    }

    /// Confirms enrolment with a code from the app; the step is stored so it is not reusable.
    /// `ticket`: the Membership UID and record generation the enrolment ticket was issued
    /// for. The record is the e-mail's: one of another Membership of the address (deleted and
    /// declared again), or of a later generation, is not this ticket's to enrol (red team 26:
    /// through a cache that had not seen the change, an old ticket confirmed — or showed —
    /// the new Membership's pending seed).
    pub async fn confirm_enrolment(
        &self,
        org: &str,
        email: &str,
        code: &str,
        ticket: (&str, u64),
        now: u64,
    ) -> Result<()> {
        let owner = Store::secret_name(org, email);
        let outcome = self
            .store
            .update(org, email, |r| {
                if !r.issued(ticket) {
                    return (None, Err(Error::NoEnrolment));
                }
                // One seed per enrolment: replacing a confirmed one takes an MFA reset first.
                let Some(sealed) = r.totp_pending.as_ref().filter(|_| r.totp_sealed.is_none())
                else {
                    return (None, Err(Error::NoEnrolment));
                };
                let seed = match self
                    .seal
                    .open(sealed, &owner)
                    .ok()
                    .and_then(|b| Seed::from_bytes(&b).ok())
                {
                    Some(s) => s,
                    None => return (None, Err(Error::NoEnrolment)),
                };
                match seed.verify(code, now, None) {
                    Ok(step) => {
                        let mut next = r.clone();
                        next.totp_sealed = next.totp_pending.take();
                        next.totp_last_step = Some(step);
                        next.totp_enrolled_at = Some(now);
                        (Some(next), Ok(()))
                    }
                    Err(e) => (None, Err(e.into())),
                }
            })
            .await?;
        outcome?;
        self.log.record(Entry::new(org, Some(email), "MfaEnrolled"));
        Ok(())
    }

    /// An admin's unlock request (nonce annotation).
    pub async fn unlock(&self, org: &str, email: &str, nonce: &str) -> Result<()> {
        self.store
            .update(org, email, |r| {
                let mut next = r.clone();
                let u = super::lockout::unlock();
                (next.failed, next.locked_until) = (u.failed, u.locked_until);
                next.handled
                    .insert(Request::Unlock.kind().into(), nonce.to_string());
                (Some(next), ())
            })
            .await?;
        self.log.record(Entry::new(org, Some(email), "Unlocked"));
        Ok(())
    }

    /// An admin's MFA reset: the member enrols again at next login; their tokens stop working.
    pub async fn reset_mfa(&self, org: &str, email: &str, nonce: &str) -> Result<()> {
        self.store
            .update(org, email, |r| {
                let mut next = r.clone();
                next.totp_sealed = None;
                next.totp_pending = None;
                next.totp_last_step = None;
                next.totp_enrolled_at = None;
                next.generation += 1;
                next.handled
                    .insert(Request::ResetMfa.kind().into(), nonce.to_string());
                (Some(next), ())
            })
            .await?;
        self.log.record(Entry::new(org, Some(email), "MfaReset"));
        Ok(())
    }

    /// The member is gone: so are their credentials — the record of that Membership
    /// (`membership_uid`), not one a new Membership of the same address has made meanwhile.
    /// With `keep_joined`, the record stays as a tombstone saying when the address first joined
    /// (`Record::tombstone`), for the MFA grace period of any later Membership of it.
    pub async fn forget(
        &self,
        org: &str,
        email: &str,
        membership_uid: Option<&str>,
        keep_joined: Option<u64>,
    ) -> Result<()> {
        let Some(joined) = keep_joined else {
            self.store.delete_if(org, email, membership_uid).await?;
            return Ok(());
        };
        let tombstone = Record::tombstone(email, joined);
        let outcome = self
            .store
            .update(org, email, |r| {
                let theirs = r.membership_uid.as_deref() == membership_uid;
                ((theirs && *r != tombstone).then(|| tombstone.clone()), ())
            })
            .await;
        match outcome {
            Ok(()) | Err(super::store::Error::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves ownership of `org` to `new_owner`: roster writes `spec.owner` (the caller has
    /// re-authenticated the owner); the admission webhook still checks the new owner. Only
    /// onto the version of the Organization whose owner the caller checked: a 409 if it changed.
    pub async fn transfer_ownership(
        &self,
        org: &str,
        new_owner: &str,
        checked_version: &str,
    ) -> kube::Result<()> {
        let api: Api<crate::api::Organization> = Api::namespaced(self.client.clone(), org);
        api.patch(
            org,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&ownership_patch(new_owner, checked_version)),
        )
        .await
        .map(drop)
    }

    /// One login attempt for the member of `org` with `email` (of Membership UID `uid`),
    /// counted toward lockout with compare-and-swap.
    #[allow(clippy::too_many_arguments)]
    pub async fn attempt_login(
        &self,
        org: &str,
        email: &str,
        uid: Option<&str>,
        password: &Secret,
        code: Option<&str>,
        policy: &super::lockout::Policy,
        now: u64,
    ) -> std::result::Result<super::login::Attempt, super::store::Error> {
        let keys = super::login::Keys {
            hasher: &self.hasher,
            seal: &self.seal,
        };
        super::login::attempt(
            &self.store,
            org,
            email,
            uid,
            password,
            code,
            &keys,
            policy,
            now,
        )
        .await
    }

    /// The argon2 work of one wrong password, for a guess that has nothing to check against.
    pub async fn spend_like_a_login(&self, password: &Secret) {
        self.hasher.verify_nothing(password).await;
    }

    /// The member's record as stored (this process's writes included).
    pub async fn record(&self, org: &str, email: &str) -> Result<Record> {
        Ok(self.store.get(org, email).await?)
    }

    /// The member's record as this process knows it, without an API call (TokenReview).
    pub fn known_record(
        &self,
        org: &str,
        email: &str,
    ) -> Option<std::result::Result<Record, super::store::Error>> {
        self.store.known_record(org, email)
    }

    /// The member's cached credential, for its `Standing` (TokenReview, SubjectAccessReview).
    pub fn known_credential(
        &self,
        org: &str,
        email: &str,
    ) -> Option<std::sync::Arc<crate::cache::Credential>> {
        self.store.known_credential(org, email)
    }

    pub fn sign(&self, claims: &token::Claims) -> Secret {
        self.signer.sign(claims)
    }

    pub fn verify(
        &self,
        token: &str,
        now: u64,
    ) -> std::result::Result<token::Claims, token::Error> {
        self.signer.verify(token, now)
    }

    /// The security log this service records to (shutdown flushes it).
    pub fn security_log(&self) -> SecurityLog {
        self.log.clone()
    }

    pub fn log(&self, entry: Entry) {
        self.log.record(entry);
    }

    /// Where members reach the identity pages.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }
}

pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| "never".into())
}

/// roster's two keys.
pub struct Keys {
    pub seal: seal::Key,
    pub signer: token::Signer,
}

impl Keys {
    /// Reads the keys Secret, creating it (with fresh random keys) on first start. Two replicas
    /// starting at once agree: the loser of the create reads the winner's keys.
    pub async fn load_or_create(client: Client, namespace: &str) -> Result<Keys> {
        let api: Api<KubeSecret> = Api::namespaced(client, namespace);
        let err = |e: kube::Error| Error::Keys(e.to_string());
        for _ in 0..3 {
            if let Some(s) = api.get_opt(KEYS_SECRET).await.map_err(err)? {
                return Keys::from_secret(&s);
            }
            let (_, seal_bytes) = seal::Key::generate();
            let sign_bytes = super::random::<32>();
            let secret = KubeSecret {
                metadata: kube::api::ObjectMeta {
                    name: Some(KEYS_SECRET.into()),
                    labels: Some(BTreeMap::from([(MANAGED_BY.into(), MANAGER.into())])),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([
                    ("seal".into(), ByteString(seal_bytes.to_vec())),
                    ("sign".into(), ByteString(sign_bytes.to_vec())),
                ])),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(s) => return Keys::from_secret(&s),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(err(e)),
            }
        }
        Err(Error::Keys("created and deleted concurrently".into()))
    }

    fn from_secret(s: &KubeSecret) -> Result<Keys> {
        let get = |k: &str| {
            s.data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|b| b.0.clone())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| Error::Keys(format!("key {k:?} is missing or not 32 bytes")))
        };
        Ok(Keys {
            seal: seal::Key::from_bytes(&get("seal")?).map_err(|e| Error::Keys(e.to_string()))?,
            signer: token::Signer::new(&get("sign")?),
        })
    }
}
