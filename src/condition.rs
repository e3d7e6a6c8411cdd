//! `meta/v1 Condition`s the kstatus way: `lastTransitionTime` moves only when the status flips,
//! so a status computed twice from the same world is byte-for-byte the same and is not written.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Where an object stands, in kstatus' terms (what Flux, Argo CD and `kubectl wait` read):
/// converged; still working (a retry will do); or stuck until a person acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Ready { reason: String, message: String },
    Reconciling { reason: String, message: String },
    Stalled { reason: String, message: String },
}

impl Health {
    pub fn ready(reason: &str, message: impl Into<String>) -> Health {
        Health::Ready {
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn reconciling(reason: &str, message: impl Into<String>) -> Health {
        Health::Reconciling {
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn stalled(reason: &str, message: impl Into<String>) -> Health {
        Health::Stalled {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// `Ready`, `Reconciling` and `Stalled` for one verdict. All three are always present (status
/// True or False), so `kubectl wait --for=condition=Stalled=false` works as well as kstatus.
pub fn kstatus(
    previous: &[Condition],
    health: &Health,
    generation: Option<i64>,
    now: Timestamp,
) -> [Condition; 3] {
    let c = |type_: &str, ok: bool, reason: &str, message: &str| {
        make(previous, type_, ok, reason, message, generation, now)
    };
    match health {
        Health::Ready { reason, message } => [
            c(READY, true, reason, message),
            c(RECONCILING, false, reason, "nothing left to do"),
            c(STALLED, false, reason, "nothing needs a person"),
        ],
        Health::Reconciling { reason, message } => [
            c(READY, false, reason, message),
            c(RECONCILING, true, reason, message),
            c(STALLED, false, reason, "retrying on its own"),
        ],
        Health::Stalled { reason, message } => [
            c(READY, false, reason, message),
            c(
                RECONCILING,
                false,
                reason,
                "waiting for a person (see Stalled)",
            ),
            c(STALLED, true, reason, message),
        ],
    }
}

/// Replaces the kstatus conditions in `conditions`, keeping the others (MfaRequired, …) after
/// them.
pub fn set_kstatus(conditions: &mut Vec<Condition>, three: [Condition; 3]) {
    conditions.retain(|c| !matches!(c.type_.as_str(), READY | RECONCILING | STALLED));
    for (i, c) in three.into_iter().enumerate() {
        conditions.insert(i, c);
    }
}

/// Builds condition `type_`, keeping the previous transition time when the status is unchanged.
pub fn make(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// When condition `type_` last became True, if it is True now.
pub fn true_since(conditions: &[Condition], type_: &str) -> Option<Timestamp> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.last_transition_time.0)
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let t1: Timestamp = "2026-01-02T00:00:00Z".parse().expect("ts");
        let first = make(&[], READY, true, "Converged", "ok", Some(1), t0);
        assert_eq!(first.last_transition_time.0, t0);
        let same = make(
            std::slice::from_ref(&first),
            READY,
            true,
            "Converged",
            "still ok",
            Some(2),
            t1,
        );
        assert_eq!(
            same.last_transition_time.0, t0,
            "unchanged status keeps its time"
        );
        let flipped = make(&[same], READY, false, "Failed", "no", Some(2), t1);
        assert_eq!(flipped.last_transition_time.0, t1);
    }

    #[test]
    fn kstatus_conditions_follow_the_verdict() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let status = |h: &Health| {
            kstatus(&[], h, Some(3), t0).map(|c| (c.type_, c.status, c.observed_generation))
        };
        let t = |s: &str| s.to_string();
        assert_eq!(
            status(&Health::ready("Converged", "ok")),
            [
                (t(READY), t("True"), Some(3)),
                (t(RECONCILING), t("False"), Some(3)),
                (t(STALLED), t("False"), Some(3))
            ]
        );
        assert_eq!(
            status(&Health::reconciling("ApiServerError", "retrying")).map(|(_, s, _)| s),
            [t("False"), t("True"), t("False")]
        );
        assert_eq!(
            status(&Health::stalled("AccessRemovalsHeld", "ack")).map(|(_, s, _)| s),
            [t("False"), t("False"), t("True")]
        );
        let mut conditions = vec![make(&[], "MfaRequired", true, "Required", "", None, t0)];
        set_kstatus(
            &mut conditions,
            kstatus(&[], &Health::ready("Converged", ""), None, t0),
        );
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, RECONCILING, STALLED, "MfaRequired"]);
    }
}
