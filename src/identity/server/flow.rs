//! The decisions behind the pages and the API: who is logging in, is it allowed, what do they
//! get. Shared so that the login page and `POST /api/v1/login` cannot drift apart.

use std::sync::Arc;

use kube::ResourceExt;

use super::AppState;
use crate::api::{Membership, Organization, parse_duration};
use crate::identity::audit::Entry;
use crate::identity::lockout::Policy;
use crate::identity::login::{self, Attempt, Keys};
use crate::identity::store::Store;
use crate::identity::token::{self, Claims};
use crate::identity::{Secret, store};

/// One login, from a page or the API.
pub struct Request {
    pub organization: String,
    pub email: String,
    pub password: Secret,
    pub code: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("organization", &self.organization)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub enum LoginOk {
    /// A session token for kubectl and the API.
    Session {
        token: Secret,
        expires_at: u64,
        membership: Box<Membership>,
    },
    /// The password was right and MFA is required but not set up: enrol first. The ticket
    /// (a short-lived token of purpose `enrol`) carries the member through the enrolment page.
    MustEnrol { ticket: Secret },
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong organization, e-mail, password or code, or a member who may not log in: one text.
    #[error("the organization, e-mail, password or code is not correct")]
    Invalid,
    #[error("too many failed logins: this account is locked until {0}; an admin can unlock it")]
    Locked(String),
    #[error("the request is malformed: {0}")]
    Malformed(&'static str),
    #[error("the login service is unavailable; try again shortly")]
    Unavailable(String),
}

impl LoginError {
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::Invalid => "InvalidCredentials",
            LoginError::Locked(_) => "Locked",
            LoginError::Malformed(_) => "Malformed",
            LoginError::Unavailable(_) => "Unavailable",
        }
    }
}

/// The Organization and the one Membership of `email` in it, from the caches.
pub fn member(
    state: &AppState,
    org: &str,
    email: &str,
) -> Option<(Arc<Organization>, Arc<Membership>)> {
    let o = state
        .orgs
        .state()
        .into_iter()
        .find(|o| o.name_any() == org && o.namespace().as_deref() == Some(org))?;
    let mut ms = state.memberships.state().into_iter().filter(|m| {
        m.namespace().as_deref() == Some(org) && m.spec.email.eq_ignore_ascii_case(email)
    });
    let m = ms.next()?;
    // Two Memberships with one e-mail is a conflict the controller reports; nobody logs in
    // through it until it is resolved.
    if ms.next().is_some() {
        return None;
    }
    Some((o, m))
}

/// Why a member may not log in at all right now, if so.
pub fn refused(m: &Membership, now: u64) -> Option<&'static str> {
    if m.spec.disabled {
        return Some("Disabled");
    }
    let expired = m
        .spec
        .expires_at
        .as_ref()
        .is_some_and(|t| t.0.as_second() <= i64::try_from(now).unwrap_or(i64::MAX));
    if expired {
        return Some("Expired");
    }
    if m.metadata.deletion_timestamp.is_some() {
        return Some("Deleted");
    }
    None
}

pub fn lockout_policy(o: &Organization) -> Policy {
    Policy {
        max_failed: o.spec.security.lockout.max_failed_attempts,
        lock_seconds: parse_duration("lockDuration", &o.spec.security.lockout.lock_duration)
            .map(|d| d.as_secs())
            .unwrap_or(15 * 60),
    }
}

fn session_ttl(o: &Organization) -> u64 {
    parse_duration("sessionTTL", &o.spec.security.session_ttl)
        .map(|d| d.as_secs())
        .unwrap_or(8 * 3600)
        .max(60)
}

/// MFA required for this member and not exempt now.
pub fn mfa_required(o: &Organization, m: &Membership, now: u64) -> bool {
    if !o.spec.security.mfa.required {
        return false;
    }
    let exempt = m.spec.mfa.as_ref().is_some_and(|e| {
        e.exempt
            && e.exempt_until
                .as_ref()
                .is_none_or(|t| t.0.as_second() > i64::try_from(now).unwrap_or(i64::MAX))
    });
    !exempt
}

/// Enrolment tickets live this long.
pub const ENROL_TICKET_SECONDS: u64 = 15 * 60;

pub fn claims(
    o: &Organization,
    m: &Membership,
    generation: u64,
    purpose: &str,
    now: u64,
) -> Claims {
    let ttl = if purpose == token::ENROL {
        ENROL_TICKET_SECONDS
    } else {
        session_ttl(o)
    };
    Claims {
        org: o.name_any(),
        membership: m.name_any(),
        email: m.spec.email.clone(),
        generation,
        iat: now,
        exp: now.saturating_add(ttl),
        purpose: purpose.into(),
    }
}

fn check_sizes(r: &Request) -> Result<(), LoginError> {
    if r.organization.is_empty() || r.organization.len() > 63 {
        return Err(LoginError::Malformed(
            "organization must be 1 to 63 characters",
        ));
    }
    if r.email.is_empty() || r.email.len() > 254 {
        return Err(LoginError::Malformed("email must be 1 to 254 characters"));
    }
    if r.code.as_ref().is_some_and(|c| c.len() > 32) {
        return Err(LoginError::Malformed("code is too long"));
    }
    Ok(())
}

/// A password (and code) check that counts toward lockout and is logged; the member must be
/// allowed to log in. Used by login and by the ownership transfer's re-authentication.
pub async fn authenticate(
    state: &AppState,
    r: &Request,
    event: &str,
    now: u64,
) -> Result<(Arc<Organization>, Arc<Membership>, u64, bool), LoginError> {
    check_sizes(r)?;
    let id = &state.identity;
    let log = |reason: &str| {
        id.log.record(
            Entry::new(&r.organization, Some(&r.email), event)
                .reason(reason)
                .client(r.source_ip.clone(), r.user_agent.as_deref()),
        )
    };
    let Some((o, m)) = member(state, &r.organization, &r.email) else {
        login::waste_equal_time(&id.hasher, &r.password).await;
        log("UnknownMember");
        return Err(LoginError::Invalid);
    };
    let why = refused(&m, now).or_else(|| {
        state
            .revocations
            .revoked(&r.organization, &m.spec.email)
            .then_some("Revoked")
    });
    if let Some(why) = why {
        login::waste_equal_time(&id.hasher, &r.password).await;
        log(why);
        return Err(LoginError::Invalid);
    }
    let email = m.spec.email.clone();
    let keys = Keys {
        hasher: &id.hasher,
        seal: &id.seal,
    };
    let attempt = login::attempt(
        &id.store,
        &r.organization,
        &email,
        &r.password,
        r.code.as_deref(),
        &keys,
        &lockout_policy(&o),
        now,
    )
    .await;
    match attempt {
        Ok(Attempt::Accepted {
            generation,
            enrolled,
        }) => Ok((o, m, generation, enrolled)),
        Ok(Attempt::Failed { why, locked, .. }) => {
            log(why.reason());
            if locked {
                id.log.record(
                    Entry::new(&r.organization, Some(&email), "Locked")
                        .client(r.source_ip.clone(), r.user_agent.as_deref()),
                );
            }
            Err(LoginError::Invalid)
        }
        Ok(Attempt::Locked { until }) => {
            log("Locked");
            Err(LoginError::Locked(if until == u64::MAX {
                "an admin unlocks it".into()
            } else {
                crate::identity::service::rfc3339(until)
            }))
        }
        Err(store::Error::NotFound) => {
            // Invited but never accepted: no password to check.
            log("NoCredentials");
            Err(LoginError::Invalid)
        }
        Err(e) => {
            tracing::warn!(reason = e.reason(), error = %e, "login could not be checked");
            log(e.reason());
            Err(LoginError::Unavailable(e.reason().into()))
        }
    }
}

/// A login: a session token, or an enrolment ticket when MFA is required and not set up.
pub async fn login(state: &AppState, r: &Request) -> Result<LoginOk, LoginError> {
    let now = super::now();
    let (o, m, generation, enrolled) = authenticate(state, r, "LoginFailed", now).await?;
    let id = &state.identity;
    let entry = |event: &str| {
        Entry::new(&r.organization, Some(&m.spec.email), event)
            .client(r.source_ip.clone(), r.user_agent.as_deref())
    };
    if !enrolled && mfa_required(&o, &m, now) {
        id.log.record(entry("LoginNeedsMfaEnrolment"));
        let ticket = id
            .signer
            .sign(&claims(&o, &m, generation, token::ENROL, now));
        return Ok(LoginOk::MustEnrol { ticket });
    }
    let c = claims(&o, &m, generation, token::SESSION, now);
    id.log.record(entry("LoginSucceeded"));
    Ok(LoginOk::Session {
        token: id.signer.sign(&c),
        expires_at: c.exp,
        membership: Box::new((*m).clone()),
    })
}

/// A token's claims if it is a valid ticket of `purpose` now.
pub fn ticket(state: &AppState, token: &str, purpose: &str) -> Option<Claims> {
    state
        .identity
        .signer
        .verify(token, super::now())
        .ok()
        .filter(|c| c.purpose == purpose)
}

/// TokenReview: the token's member as they are *now*. Reads only caches, so it answers in
/// microseconds and reflects a disabled member as soon as the watch delivers the change.
pub fn review(
    state: &AppState,
    token: &str,
    now: u64,
) -> Result<(Claims, Arc<Membership>), &'static str> {
    let c = state
        .identity
        .signer
        .verify(token, now)
        .map_err(|e| e.reason())?;
    if c.purpose != token::SESSION {
        return Err("TokenWrongPurpose");
    }
    let m = standing(
        state,
        &c.org,
        &c.membership,
        Some(&c.email),
        c.generation,
        now,
    )?;
    Ok((c, m))
}

/// Keys of the user `extra` that TokenReview returns and SubjectAccessReview gets back.
pub const EXTRA_MEMBERSHIP: &str = "roster.dev/membership";
pub const EXTRA_GENERATION: &str = "roster.dev/generation";

/// The authorization webhook's question for a request by one of roster's members: is the
/// member still in good standing *now*? The API server caches token authentications for 10 s
/// (built in); asking here on every request (no cache) makes a disabled member's very next
/// call fail. `Ok(())` = no opinion (RBAC decides); `Err` = deny, with the reason.
pub fn authorize(
    state: &AppState,
    groups: &[String],
    extra: &std::collections::BTreeMap<String, Vec<String>>,
    now: u64,
) -> Result<(), &'static str> {
    let Some(org) = groups.iter().find_map(|g| g.strip_prefix("roster:")) else {
        return Ok(());
    };
    let first = |k: &str| extra.get(k).and_then(|v| v.first());
    // A group that merely looks like roster's (another authenticator's) is not ours to judge.
    let Some(name) = first(EXTRA_MEMBERSHIP) else {
        return Ok(());
    };
    let generation = first(EXTRA_GENERATION)
        .and_then(|g| g.parse().ok())
        .ok_or("TokenMalformed")?;
    standing(state, org, name, None, generation, now).map(|_| ())
}

/// The member behind a token: present, enabled, unexpired, not revoked or locked, and of the
/// token's credential generation. Reads caches only (by name, no scan).
fn standing(
    state: &AppState,
    org: &str,
    membership: &str,
    email: Option<&str>,
    generation: u64,
    now: u64,
) -> Result<Arc<Membership>, &'static str> {
    let m = state
        .memberships
        .get(&kube::runtime::reflector::ObjectRef::new(membership).within(org))
        .filter(|m| email.is_none_or(|e| m.spec.email.eq_ignore_ascii_case(e)))
        .ok_or("MemberGone")?;
    if let Some(why) = refused(&m, now) {
        return Err(why);
    }
    if state.revocations.revoked(org, &m.spec.email) {
        return Err("Revoked");
    }
    let cred = state
        .credentials
        .get(
            &kube::runtime::reflector::ObjectRef::new(&Store::secret_name(org, &m.spec.email))
                .within(state.identity.store.namespace()),
        )
        .ok_or("CredentialsGone")?;
    let record = Store::parse(&cred).map_err(|e| e.reason())?;
    if record.generation != generation {
        return Err("TokenRevoked");
    }
    if record.locked_until.is_some_and(|u| u > now) {
        return Err("Locked");
    }
    Ok(m)
}
