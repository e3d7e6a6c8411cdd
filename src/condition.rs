//! `meta/v1 Condition`s the kstatus way: `lastTransitionTime` moves only when the status flips,
//! so a status computed twice from the same world is byte-for-byte the same and is not written.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";

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
}
