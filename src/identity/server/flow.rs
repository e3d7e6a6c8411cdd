//! The decisions behind the pages and the API: who is logging in, is it allowed, what do they
//! get. Shared so that the login page and `POST /api/v1/login` cannot drift apart.

use crate::Reason;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::AppState;
use crate::access::{Member, cut_off, mfa_required_of};
use crate::api::contract::{EXTRA_GENERATION, EXTRA_MEMBERSHIP, parse_member_username};
use crate::api::{Membership, Organization};
use crate::cache::CachedMembership;
use crate::identity::audit::Entry;
use crate::identity::lockout::Policy;
use crate::identity::login::Attempt;
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
    /// Too many attempts from this address or for this member: try again after this many
    /// seconds.
    #[error("too many attempts; try again in {0} seconds")]
    RateLimited(u64),
}

impl crate::Reason for LoginError {
    fn reason(&self) -> &'static str {
        match self {
            LoginError::Invalid => "InvalidCredentials",
            LoginError::Locked(_) => "Locked",
            LoginError::Malformed(_) => "Malformed",
            LoginError::RateLimited(_) => "RateLimited",
        }
    }
}

/// The wait a rate limit asks for, in whole seconds (at least one).
pub fn retry_after(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The Organization and the one Membership of `email` in it, from the caches.
pub fn member(
    state: &AppState,
    org: &str,
    email: &str,
) -> Option<(Arc<Organization>, Arc<Membership>)> {
    // Lookups, not scans: this runs for every login, guess or not.
    let o = state.orgs.get(org, org)?;
    let found = match &state.emails {
        Some(ix) => ix.get(org, email),
        None => state.memberships.state_filter(|m| {
            m.namespace().as_deref() == Some(org) && m.spec.email.eq_ignore_ascii_case(email)
        }),
    };
    let mut ms = found.into_iter();
    let m = ms.next()?;
    // Two Memberships with one e-mail is a conflict the controller reports; nobody logs in
    // through it until it is resolved.
    if ms.next().is_some() {
        return None;
    }
    Some((o, m))
}

/// `now` (unix seconds) as a timestamp for the domain rules.
pub fn timestamp(now: u64) -> Timestamp {
    i64::try_from(now)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Why a member may not log in, accept or use a token right now, if so: cut off (disabled,
/// expired, being deleted), or cut off by a change the admission webhook has seen and the
/// caches not yet.
pub fn refused(state: &AppState, m: &impl Member, now: u64) -> Option<&'static str> {
    if let Some(why) = cut_off(m, timestamp(now)) {
        return Some(why.reason());
    }
    state
        .revocations
        .revoked(m.member_uid().unwrap_or_default())
        .then_some("Revoked")
}

pub fn lockout_policy(o: &Organization) -> Policy {
    Policy {
        max_failed: o.spec.security.lockout.max_failed_attempts,
        lock_seconds: o.spec.security.lockout.lock_duration().as_secs(),
    }
}

fn session_ttl(o: &Organization) -> u64 {
    o.spec.security.session_ttl().as_secs().max(60)
}

/// MFA required for this member and not exempt now.
pub fn mfa_required(o: &Organization, m: &Membership, now: u64) -> bool {
    mfa_required_of(o, m, timestamp(now))
}

/// Enrolment tickets live this long.
pub const ENROL_TICKET_SECONDS: u64 = 15 * 60;

/// A session token (for `audiences`, the API server's) or an enrolment ticket.
pub fn claims(
    o: &Organization,
    m: &Membership,
    generation: u64,
    purpose: &str,
    audiences: &[String],
    now: u64,
) -> Claims {
    let (ttl, aud) = if purpose == token::ENROL {
        (ENROL_TICKET_SECONDS, vec![])
    } else {
        (session_ttl(o), audiences.to_vec())
    };
    Claims {
        org: o.name_any(),
        membership: m.name_any(),
        uid: m.metadata.uid.clone().unwrap_or_default(),
        email: m.spec.email.clone(),
        generation,
        iat: now,
        exp: now.saturating_add(ttl),
        purpose: purpose.into(),
        aud,
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

type Authenticated = (Arc<Organization>, Arc<Membership>, u64, bool);

/// "typed:" and 16 hex digits of an HMAC of what was typed (lower-cased), keyed by a secret
/// this process draws at start: the same text gives the same digest for the life of the
/// process (attempts correlate), and a wordlist run against a log cannot recover it.
fn typed_digest(text: &str) -> String {
    static KEY: std::sync::OnceLock<ring::hmac::Key> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &crate::identity::random::<32>())
    });
    let tag = ring::hmac::sign(key, text.to_lowercase().as_bytes());
    let hex: String = tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("typed:{hex}")
}

/// A password (and code) check that counts toward lockout and is logged; the member must be
/// allowed to log in. Used by login and by the ownership transfer's re-authentication.
/// Every failure but a cheap refusal waits for the failure floor after arrival (see
/// `limit::FailureFloor`): unknown organizations and addresses, disabled members and wrong
/// passwords do different work, and an outsider timing the answers must not learn which.
pub async fn authenticate(
    state: &AppState,
    r: &Request,
    event: &str,
    now: u64,
) -> Result<Authenticated, LoginError> {
    let arrived = tokio::time::Instant::now();
    let result = check(state, r, event, now).await;
    // Refusals that cost nothing (over a rate limit, a malformed request) say nothing about
    // anyone and answer at once; every other failure waits for the floor.
    if matches!(result, Err(LoginError::Invalid | LoginError::Locked(_))) {
        let floor = &state.limits.failure_floor;
        floor.observe(arrived.elapsed());
        tokio::time::sleep_until(arrived + floor.now()).await;
    }
    result
}

async fn check(
    state: &AppState,
    r: &Request,
    event: &str,
    now: u64,
) -> Result<Authenticated, LoginError> {
    check_sizes(r)?;
    let id = &state.identity;
    let found = member(state, &r.organization, &r.email);
    // What was typed for nobody may be anything, a password typed in the wrong field
    // included: the log keeps a digest of it (repeated attempts still correlate), never the
    // text. A real organization and member are named as they are.
    let org_exists = state.orgs.get(&r.organization, &r.organization).is_some();
    let logged_org = if org_exists {
        r.organization.clone()
    } else {
        typed_digest(&r.organization)
    };
    let logged_email = match &found {
        Some((_, m)) => m.spec.email.clone(),
        None => typed_digest(&r.email),
    };
    let log = |reason: &str| {
        id.log(
            Entry::new(&logged_org, Some(&logged_email), event)
                .reason(reason)
                .client(r.source_ip.clone(), r.user_agent.as_deref()),
        )
    };
    // Limits first: a refused attempt costs no hashing, and is not counted toward lockout.
    if let Err(wait) = state
        .limits
        .source(r.source_ip.as_deref())
        .and_then(|()| state.limits.member(&r.organization, &r.email))
    {
        log("RateLimited");
        return Err(LoginError::RateLimited(retry_after(wait)));
    }
    let Some((o, m)) = found else {
        id.spend_like_a_login(&r.password).await;
        log("UnknownMember");
        return Err(LoginError::Invalid);
    };
    if let Some(why) = refused(state, &m, now) {
        id.spend_like_a_login(&r.password).await;
        log(why);
        return Err(LoginError::Invalid);
    }
    let email = m.spec.email.clone();
    let attempt = id
        .attempt_login(
            &r.organization,
            &email,
            m.metadata.uid.as_deref(),
            &r.password,
            r.code.as_deref(),
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
                id.log(
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
            // No record for this Membership yet (or only a deleted namesake's); `attempt` has
            // spent the same hashing work as a wrong password.
            log("NoCredentials");
            Err(LoginError::Invalid)
        }
        Err(e) => {
            // The credential store failing (an API server outage, throttling) is answered like
            // a wrong password: only members ever reach the store, so a 503 here would tell an
            // outsider which addresses are members. roster's log and the security log say why.
            tracing::warn!(reason = e.reason(), error = %e, "login could not be checked");
            log(e.reason());
            Err(LoginError::Invalid)
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
        id.log(entry("LoginNeedsMfaEnrolment"));
        let ticket = id.sign(&claims(&o, &m, generation, token::ENROL, &[], now));
        return Ok(LoginOk::MustEnrol { ticket });
    }
    let c = claims(&o, &m, generation, token::SESSION, &state.audiences, now);
    id.log(entry("LoginSucceeded"));
    Ok(LoginOk::Session {
        token: id.sign(&c),
        expires_at: c.exp,
        membership: Box::new((*m).clone()),
    })
}

/// An enrolment ticket's claims, if it is valid now and its member is still in good
/// standing (present, same Membership, enabled, same credential generation).
pub fn enrol_ticket_now(state: &AppState, ticket: &str, now: u64) -> Option<Claims> {
    let c = state.identity.verify(ticket, now).ok()?;
    if c.purpose != token::ENROL {
        return None;
    }
    standing_but_mfa(state, &c, now).ok()?;
    Some(c)
}

/// `enrol_ticket_now`, waiting up to `CACHE_CATCH_UP` for a cache that has not seen the
/// record the ticket was issued with (acceptance bumps the generation; the enrolment form
/// came back before the watch, here or on another replica, delivered it, and the member was
/// told "This enrolment page has expired" — seen in CI on a real node). Only for a ticket
/// roster signed whose generation is ahead of the cache: an older ticket is refused at once.
pub async fn enrol_ticket(state: &AppState, ticket: &str, now: u64) -> Option<Claims> {
    let give_up = tokio::time::Instant::now() + CACHE_CATCH_UP;
    loop {
        if let Some(c) = enrol_ticket_now(state, ticket, now) {
            return Some(c);
        }
        let c = state.identity.verify(ticket, now).ok()?;
        // The ticket's own record, behind: not another Membership's (whether the address was
        // invited again is none of an old ticket's business; red team 27).
        let behind = matches!(
            state.identity.known_record(&c.org, &c.email),
            Some(Ok(r)) if r.generation < c.generation
                && r.membership_uid.as_deref() == Some(c.uid.as_str())
        );
        if c.purpose != token::ENROL || !behind || tokio::time::Instant::now() >= give_up {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// How long a request waits for the watch to deliver a record it knows is newer.
const CACHE_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(3);

/// TokenReview: the token's member as they are *now*, for the audiences the review names (none:
/// the API server's own). Reads only caches, so it answers in microseconds and reflects a
/// disabled member as soon as the admission webhook or the watch sees the change. On success,
/// the audiences the token is valid for among those asked (empty when none were named).
pub fn review(
    state: &AppState,
    token: &str,
    audiences: &[String],
    now: u64,
) -> Result<(Claims, Arc<CachedMembership>, Vec<String>), &'static str> {
    let c = state.identity.verify(token, now).map_err(|e| e.reason())?;
    if c.purpose != token::SESSION {
        return Err("TokenWrongPurpose");
    }
    let matched: Vec<String> = audiences
        .iter()
        .filter(|a| c.aud.contains(a))
        .cloned()
        .collect();
    if !audiences.is_empty() && matched.is_empty() {
        return Err("TokenWrongAudience");
    }
    let m = standing(state, &c, now)?;
    Ok((c, m, matched))
}

/// The authorization webhook's question for a request by one of roster's members: is the
/// member still in good standing *now*? The API server caches token authentications for 10 s
/// (built in); asking here on every request (no cache) makes a disabled member's very next
/// call fail. `Ok(())` = no opinion (RBAC decides); `Err` = deny, with the reason (which names
/// the requester's own state only).
pub fn authorize(
    state: &AppState,
    user: &str,
    uid: Option<&str>,
    extra: &std::collections::BTreeMap<String, Vec<String>>,
    now: u64,
) -> Result<(), &'static str> {
    // Only roster's own user names are roster's to judge.
    let Some((org, email)) = parse_member_username(user) else {
        return Ok(());
    };
    let first = |k: &str| extra.get(k).and_then(|v| v.first());
    let membership = first(EXTRA_MEMBERSHIP).ok_or("TokenMalformed")?;
    let generation = first(EXTRA_GENERATION)
        .and_then(|g| g.parse().ok())
        .ok_or("TokenMalformed")?;
    let c = Claims {
        org: org.to_string(),
        membership: membership.clone(),
        uid: uid.unwrap_or_default().to_string(),
        email: email.to_string(),
        generation,
        iat: now,
        exp: now,
        purpose: token::SESSION.into(),
        aud: vec![],
    };
    standing(state, &c, now).map(|_| ())
}

/// The member a token names: present, the very Membership it was issued for (UID), enabled,
/// unexpired, not revoked or locked, with a credential record made for it and of the token's
/// generation. Reads caches only (by name, no scan).
fn standing(state: &AppState, c: &Claims, now: u64) -> Result<Arc<CachedMembership>, &'static str> {
    let (m, mfa) = standing_but_mfa(state, c, now)?;
    if mfa_overdue(state, c, &m, mfa, now) {
        return Err("MfaOverdue");
    }
    Ok(m)
}

/// What `mfa_overdue` reads of the member's record: enrolled, and since when the address
/// joined (`Record::grace_from`).
#[derive(Clone, Copy)]
struct MfaFacts {
    enrolled: bool,
    grace_from: Option<u64>,
}

/// `standing`, except MFA: what an enrolment ticket needs. A member past their grace period
/// enrols to regain access; refusing them for being overdue left them no way back but an
/// exemption from the owner (red team 35).
fn standing_but_mfa(
    state: &AppState,
    c: &Claims,
    now: u64,
) -> Result<(Arc<CachedMembership>, MfaFacts), &'static str> {
    let m = state
        .memberships
        .cached_if(&c.org, &c.membership, |m| {
            m.email().eq_ignore_ascii_case(&c.email) && m.uid().unwrap_or_default() == c.uid
        })
        .ok_or("MemberGone")?;
    if let Some(why) = refused(state, &m, now) {
        return Err(why);
    }
    let credential = state
        .identity
        .known_credential(&c.org, m.email())
        .ok_or("CredentialsGone")?;
    let record = credential
        .standing()
        .map_err(|_| store::Error::Corrupt(String::new()).reason())?;
    if !record.belongs_to(&m) {
        return Err("CredentialsGone");
    }
    if record.generation != c.generation {
        return Err("TokenRevoked");
    }
    if record.locked_until.is_some_and(|u| u > now) {
        return Err("Locked");
    }
    let mfa = MfaFacts {
        enrolled: record.enrolled,
        grace_from: record.grace_from,
    };
    Ok((m, mfa))
}

/// MFA is required of the member, they have not enrolled, and their grace period is over:
/// the controller takes their bindings away, and their tokens stop too. Login hands no
/// session to such a member, but one issued before MFA was required of them (or during an
/// exemption) could outlive the grace period (red team 32), with whatever the cluster grants
/// their organization's group or any authenticated user.
fn mfa_overdue(state: &AppState, c: &Claims, m: &impl Member, record: MfaFacts, now: u64) -> bool {
    let Some(o) = state.orgs.get(&c.org, &c.org) else {
        return false;
    };
    let now = timestamp(now);
    if record.enrolled || !mfa_required_of(&o, m, now) {
        return false;
    }
    let since = o
        .status
        .as_ref()
        .and_then(|s| crate::condition::true_since(&s.conditions, "MfaRequired"))
        .unwrap_or(now);
    let first_joined = record.grace_from.map(timestamp);
    crate::access::mfa_grace_end(&o, since, m, first_joined) <= now
}
