//! A member's credential record: the JSON that identity keeps in one Secret per member in
//! roster's own namespace (see `identity::store`). A contract like the CRDs: the identity
//! server writes it, the controller and the webhook read it (through the cache), so it lives
//! beside them and not inside identity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use serde::{Deserialize, Serialize};

/// The data key of the record in its Secret.
pub const KEY: &str = "record";

/// Everything roster knows about one member's credentials. No secret in clear: the password is
/// an argon2id hash, the TOTP seed is sealed.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The member's e-mail (the Secret's name only carries its hash).
    #[serde(default)]
    pub email: String,
    /// The UID of the Membership this record was made for. A Membership deleted and created
    /// again with the same e-mail is another member: tokens, password and TOTP seed of the
    /// old one never carry over (see `belongs_to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub failed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<u64>,
    /// Bumped by password and MFA resets; tokens of older generations stop working.
    #[serde(default)]
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_last_step: Option<u64>,
    /// A seed shown to the member but not yet confirmed with a code (sealed like the other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_pending: Option<String>,
    /// Unix seconds of TOTP enrolment (set with `totp_sealed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_enrolled_at: Option<u64>,
    /// The open invitation, if any: only its token's hash. Boxed: most records (accepted
    /// members') have none, and 20,000 cached records would carry its 112 bytes each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<Box<Invitation>>,
    /// The last run of invitations that could not be delivered (each withdrawn): the next is
    /// issued only after a backoff (`Undelivered::retry_at`). Cleared when an invitation that
    /// went out is replaced; read only while no invitation is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undelivered: Option<Undelivered>,
    /// Unix seconds when the member accepted their invitation (set a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<u64>,
    /// Who could read the link the member accepted through (`Invitation::link_readers`),
    /// kept at acceptance: any of them may have set this password. `None`: accepted before
    /// roster kept it. Ownership goes only to a member whose link nobody but the owner handing
    /// it over could read (see `webhook::validate::new_owner_accepted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_readers: Option<Vec<String>>,
    /// The link accepted through: its `link_id`, or `Email`. Without it `link_readers` is not
    /// trusted: from 1e288fb to 21a8f53 a member's links shared one Secret name, and a former
    /// reader could read a replacement whose readers did not name them (red team 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_link: Option<String>,
    /// Unix seconds of the last successful login, to the minute (see `Store::login_succeeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<u64>,
    /// The last nonce acted on per request annotation (`resend-invitation`, `unlock`,
    /// `reset-mfa`), so each request is acted on once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handled: BTreeMap<String, String>,
    /// Unix seconds: when the address first joined the organization (the creation of the
    /// first Membership of it roster made a record for). Carried to the records of later
    /// Memberships of the address, and kept alone (`tombstone`) while MFA is required after
    /// the address leaves: an MFA grace period runs from here however often the address is
    /// deleted and declared again (`access::mfa_grace_end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_joined: Option<u64>,
}

/// Debug by hand: the token's hash stays out of logs (red team of ec1fff5).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    /// SHA-256 of the token (the token itself is only in the link).
    pub hash: String,
    pub sent_at: u64,
    pub expires_at: u64,
    /// `Email` or `Secret`.
    pub delivery: String,
    /// The member's role and projects it was issued for (`access::invitation_scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Who could read it when issued (Secret delivery): if that changes, it is replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<String>,
    /// Names this link's Secret, Role and RoleBinding (Secret delivery; see
    /// `contract::invitation_link_name`). `None`: e-mailed, or issued before links had ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_id: Option<String>,
}

impl Invitation {
    /// What a record keeps of the link accepted through (`Record::accepted_link`): the link's
    /// id, or `Email`; none for a Secret link from before links had ids.
    pub fn accepted_as(&self) -> Option<String> {
        if self.delivery == "Email" {
            Some("Email".into())
        } else {
            self.link_id.clone()
        }
    }

    /// The Secret (and Role and RoleBinding) of this link, if it was delivered as one.
    pub fn secret_name(&self, membership: &str) -> Option<String> {
        (self.delivery == "Secret")
            .then(|| super::contract::invitation_link_name(membership, self.link_id.as_deref()))
    }

    /// Who could read the link: those its Secret was readable by when issued, nobody when it
    /// went by e-mail (the mailbox's owner aside).
    pub fn link_readers(&self) -> Vec<String> {
        if self.delivery == "Email" {
            Vec::new()
        } else {
            self.readers.clone()
        }
    }
}

/// Invitations withdrawn in a row because their link could not be delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Undelivered {
    /// Unix seconds of the last withdrawal.
    pub at: u64,
    pub attempts: u32,
}

impl Undelivered {
    /// When the next invitation may be issued: 2 s after the first failure, doubling to 5
    /// minutes. Each attempt writes the record twice (stored, withdrawn), and every write
    /// triggers a reconcile at once: without a wait, a refused address kept an organization's
    /// reconcile busy writing the record hundreds of times a second (red team, 8cd83cb).
    pub fn retry_at(&self) -> u64 {
        let backoff = 2u64
            .saturating_pow(self.attempts.clamp(1, 16))
            .min(Self::MAX_WAIT);
        self.at.saturating_add(backoff)
    }

    /// The longest wait, in seconds.
    pub const MAX_WAIT: u64 = 300;

    /// When the next invitation may be issued, judged at `now`: a failure stamped later than
    /// the longest wait from now came from a clock that ran ahead (or was stepped back since),
    /// and is not waited for — every later reconcile would find it still ahead (red team,
    /// 3e1cdfe).
    pub fn retry_at_from(&self, now: u64) -> Option<u64> {
        (self.at <= now.saturating_add(Self::MAX_WAIT))
            .then(|| self.retry_at())
            .filter(|at| *at > now)
    }
}

impl Record {
    /// When the address first joined, as far as this record tells: `first_joined`, or for a
    /// record written before roster kept that, its earliest invitation, acceptance or failed
    /// delivery (later than the Membership's creation: a grace period from it is too long).
    pub fn grace_from(&self) -> Option<u64> {
        self.first_joined.or_else(|| {
            [
                self.invitation.as_ref().map(|i| i.sent_at),
                self.accepted_at,
                self.undelivered.map(|u| u.at),
            ]
            .into_iter()
            .flatten()
            .min()
        })
    }

    /// What is kept of the record of an address no Membership holds while MFA is required:
    /// the address and when it first joined; no Membership's, no password, no seed.
    pub fn tombstone(email: &str, first_joined: u64) -> Record {
        Record {
            email: email.to_string(),
            first_joined: Some(first_joined),
            ..Default::default()
        }
    }

    /// Whether this is a `tombstone` (made for no Membership).
    pub fn is_tombstone(&self) -> bool {
        *self == Record::tombstone(&self.email, self.first_joined.unwrap_or_default())
            && self.first_joined.is_some()
    }

    pub fn enrolled(&self) -> bool {
        self.totp_sealed.is_some()
    }

    /// Whether a ticket or token issued for Membership UID `uid` at `generation` is this
    /// record's as it stands.
    pub fn issued(&self, (uid, generation): (&str, u64)) -> bool {
        self.membership_uid.as_deref() == Some(uid) && self.generation == generation
    }

    /// Whether this record was made for Membership `m` (and not a deleted one of the same
    /// e-mail).
    pub fn belongs_to(&self, m: &super::Membership) -> bool {
        self.membership_uid.as_deref() == m.metadata.uid.as_deref()
    }
}

// A password hash can be attacked offline and a sealed seed is still key material: neither
// belongs in a log line, so Debug shows only whether they are set.
impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("hash", &"<redacted>")
            .field("sent_at", &self.sent_at)
            .field("expires_at", &self.expires_at)
            .field("delivery", &self.delivery)
            .field("scope", &self.scope)
            .field("readers", &self.readers)
            .field("link_id", &self.link_id)
            .finish()
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("membership_uid", &self.membership_uid)
            .field("failed", &self.failed)
            .field("locked_until", &self.locked_until)
            .field("generation", &self.generation)
            .field(
                "totp_sealed",
                &self.totp_sealed.as_ref().map(|_| "<redacted>"),
            )
            .field("totp_last_step", &self.totp_last_step)
            .field(
                "totp_pending",
                &self.totp_pending.as_ref().map(|_| "<redacted>"),
            )
            .field("totp_enrolled_at", &self.totp_enrolled_at)
            .field(
                "invitation",
                &self.invitation.as_ref().map(|i| i.expires_at),
            )
            .field("accepted_at", &self.accepted_at)
            .field("link_readers", &self.link_readers)
            .field("accepted_link", &self.accepted_link)
            .field("last_login", &self.last_login)
            .field("first_joined", &self.first_joined)
            .finish_non_exhaustive()
    }
}

/// The record a credential Secret holds.
pub fn record_in(s: &Secret) -> Result<Record, String> {
    parse(record_bytes(s)?)
}

/// The record's JSON as a credential Secret holds it.
pub fn record_bytes(s: &Secret) -> Result<&[u8], String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(KEY))
        .map(|raw| raw.0.as_slice())
        .ok_or_else(|| "no record".to_string())
}

/// A record from its JSON, or why it cannot be read. The reason names the kind of fault and
/// where, never the text found there: that text may be a password hash or a sealed seed (red
/// team of ec1fff5). Only an object is a record: serde's derive would also take an array.
pub fn parse(json: &[u8]) -> Result<Record, String> {
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err("the record is not a JSON object".into());
    }
    serde_json::from_slice(json).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "a field of the wrong type or value",
            serde_json::error::Category::Eof => "cut short",
        };
        format!(
            "the record is {kind} (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}
