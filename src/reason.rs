//! One vocabulary for why something failed.

/// A stable PascalCase name for an error (or a refusal): Events, condition reasons, metric
/// labels, security-log entries and log fields all use it, so that one failure is called the
/// same everywhere. Every error enum of roster implements it.
pub trait Reason {
    fn reason(&self) -> &'static str;
}
