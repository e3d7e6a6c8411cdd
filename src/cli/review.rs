//! `roster plan` and `roster diff`: the review module's answers, printed, and an exit code a CI
//! job can act on (0 clean, 1 a violation, 2 more removals than allowed; usage errors are 2 too,
//! as clap's).

use std::path::PathBuf;

use k8s_openapi::jiff::Timestamp;

use crate::review::render::{self, Format};
use crate::review::schema::Schemas;
use crate::review::{self, Caller, Options};

/// What a review command prints and how it ends.
pub struct Outcome {
    pub output: String,
    pub code: u8,
    /// One line for standard error when the code is not 0.
    pub summary: Option<String>,
}

pub struct Who {
    pub as_user: Option<String>,
    pub as_groups: Vec<String>,
}

impl Who {
    /// `--as alice@acme.example` is that member of whichever organization an object belongs
    /// to (their roster user name there); anything with a `:` is a user name as is.
    fn caller(&self) -> Option<Caller> {
        let user = self.as_user.as_ref()?;
        Some(Caller {
            username: user.clone(),
            groups: self.as_groups.clone(),
        })
    }
}

pub fn options(namespace: Option<String>, who: &Who, now: Option<&str>) -> super::Result<Options> {
    let now = match now {
        Some(t) => t
            .parse::<Timestamp>()
            .map_err(|e| super::Error::Invalid(format!("--now {t}: not an RFC 3339 time ({e})")))?,
        None => Timestamp::now(),
    };
    let mut o = Options::new(now);
    o.namespace = namespace;
    if let Some(c) = who.caller() {
        o.caller = c;
    }
    Ok(o)
}

/// A member named by e-mail acts under their roster user name of each organization: the
/// webhook is asked once per organization.
fn per_org_caller(opts: &Options, head: &review::Tree) -> Vec<(Option<String>, Options)> {
    let user = &opts.caller.username;
    if user.contains(':') || !user.contains('@') {
        return vec![(None, opts.clone())];
    }
    head.homes()
        .into_iter()
        .map(|home| {
            let mut o = opts.clone();
            o.caller.username = crate::subjects::Subjects::roster_only()
                .names(&home, user)
                .into_iter()
                .next()
                .unwrap_or_else(|| user.clone());
            (Some(home), o)
        })
        .collect()
}

fn judge(
    head: &review::Tree,
    base: Option<&review::Tree>,
    read: Vec<review::Violation>,
    opts: &Options,
) -> (review::report::Report, Vec<review::Violation>) {
    let mut violations = read;
    let callers = per_org_caller(opts, head);
    let mut report = None;
    for (home, o) in callers {
        let (r, v) = review::plan(head, base, Vec::new(), &o);
        // Each organization is judged as its own member would be.
        violations.extend(v.into_iter().filter(|x| {
            home.as_deref().is_none_or(|h| {
                x.object
                    .split(' ')
                    .nth(1)
                    .is_some_and(|k| k.starts_with(&format!("{h}/")))
            })
        }));
        report.get_or_insert(r);
    }
    let report = report.unwrap_or_else(|| review::report::report(head, &opts.settings, opts.now));
    (report, violations)
}

pub fn plan(
    files: &[PathBuf],
    base: &[PathBuf],
    opts: &Options,
    format: Format,
) -> super::Result<Outcome> {
    let schemas = Schemas::new();
    let (mut head, read) = review::read(files, opts, &schemas).map_err(review_error)?;
    let base = if base.is_empty() {
        None
    } else {
        let (b, _) = review::read(base, opts, &schemas).map_err(review_error)?;
        review::inherit(&mut head, &b);
        Some(b)
    };
    let (report, violations) = judge(&head, base.as_ref(), read, opts);
    let output = render::plan(&report, &violations, format);
    let code = u8::from(!violations.is_empty());
    Ok(Outcome {
        output,
        code,
        summary: (code != 0).then(|| format!("{} violation(s)", violations.len())),
    })
}

pub enum Base {
    Files(Vec<PathBuf>),
    Live,
}

pub fn diff(
    base: Base,
    head_files: &[PathBuf],
    opts: &Options,
    max_removals: Option<usize>,
    format: Format,
) -> super::Result<Outcome> {
    let schemas = Schemas::new();
    let (mut head, read) = review::read(head_files, opts, &schemas).map_err(review_error)?;
    let base_tree = match base {
        Base::Files(paths) => {
            let (b, bad) = review::read(&paths, opts, &schemas).map_err(review_error)?;
            if !bad.is_empty() {
                let mut out = String::new();
                render::violations(&bad, &mut out);
                return Err(super::Error::Invalid(format!(
                    "the base does not read as a tree of roster objects:\n{out}"
                )));
            }
            b
        }
        // The cluster's other organizations are not part of this change (nor may an
        // organization's Admin list them).
        Base::Live => {
            let homes = head.homes();
            super::block_on_live(|c| async move { review::live_homes(&c, &homes).await })?
        }
    };
    review::inherit(&mut head, &base_tree);
    let base_report = review::report::report(&base_tree, &opts.settings, opts.now);
    let (head_report, violations) = judge(&head, Some(&base_tree), read, opts);
    let d = review::diff::diff(&base_report, &head_report);
    let output = render::diff(&d, &violations, max_removals, format);
    let (code, summary) = if !violations.is_empty() {
        (1, Some(format!("{} violation(s)", violations.len())))
    } else if max_removals.is_some_and(|m| d.removals > m) {
        (
            2,
            Some(format!(
                "{} access grant(s) would be removed, more than --max-removals {}",
                d.removals,
                max_removals.unwrap_or(0)
            )),
        )
    } else {
        (0, None)
    };
    Ok(Outcome {
        output,
        code,
        summary,
    })
}

/// `access WHO [--project P]`: what a person can reach in each organization the caller can
/// read, and why — or why not — computed from the live objects by the controller's functions.
pub fn access(
    who: &str,
    project: Option<&str>,
    namespace: Option<&str>,
    json_out: bool,
) -> super::Result<Outcome> {
    let ns = namespace.map(str::to_string);
    let tree = super::block_on_live(|c| async move { review::live_in(&c, ns.as_deref()).await })?;
    let report = review::report::report(
        &tree,
        &crate::controller::Settings::default(),
        Timestamp::now(),
    );
    let found: Vec<(&review::report::OrgReport, &review::report::PersonReport)> = report
        .organizations
        .iter()
        .filter_map(|o| Some((o, o.people.iter().find(|p| p.email == who)?)))
        .collect();
    if json_out {
        let v: Vec<serde_json::Value> = found
            .iter()
            .map(|(o, p)| serde_json::json!({"organization": o.name, "person": p}))
            .collect();
        return Ok(Outcome {
            output: serde_json::to_string_pretty(&v).unwrap_or_default() + "\n",
            code: u8::from(found.is_empty()),
            summary: found
                .is_empty()
                .then(|| format!("{who} is a member of no organization you can read")),
        });
    }
    let mut out = String::new();
    for (o, p) in &found {
        out.push_str(&access_text(o, p, project));
    }
    let code = u8::from(found.is_empty());
    Ok(Outcome {
        output: out,
        code,
        summary: (code != 0).then(|| format!("{who} is a member of no organization you can read")),
    })
}

fn access_text(
    o: &review::report::OrgReport,
    p: &review::report::PersonReport,
    only: Option<&str>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let via = p.membership.as_deref().map_or(
        "no Membership yet: roster creates one for the owner".to_string(),
        |m| format!("Membership {m}"),
    );
    let _ = writeln!(
        out,
        "{} in {}: {:?} ({via}), {:?}, MFA {:?}",
        p.email, o.name, p.role, p.phase, p.mfa
    );
    if let Some(c) = &p.cut_off {
        let _ = writeln!(
            out,
            "  cut off from everything: {} ({})",
            c.message, c.reason
        );
    }
    for pr in &o.projects {
        if only.is_some_and(|x| x != pr.name) {
            continue;
        }
        let line = match (p.projects.get(&pr.name), p.refused.get(&pr.name)) {
            (Some(role), _) => {
                let why = match p.role {
                    crate::api::EffectiveRole::Owner => {
                        "the owner is Admin of every project".to_string()
                    }
                    crate::api::EffectiveRole::Admin if o.admins_see_all_projects => {
                        "Admins are Admin of every project (adminsSeeAllProjects)".to_string()
                    }
                    _ => format!("declared in {via}"),
                };
                format!("{}: {why}", role.as_str())
            }
            (None, Some(why)) => format!("no access: {why}"),
            (None, None) if p.cut_off.is_some() => "no access: cut off".to_string(),
            (None, None) => format!(
                "no access: no role in {} is declared for {}",
                pr.name, p.email
            ),
        };
        let _ = writeln!(out, "  {} ({}): {line}", pr.name, pr.namespace);
    }
    if let Some(x) = only
        && !o.projects.iter().any(|pr| pr.name == x)
    {
        let _ = writeln!(out, "  {x}: no such project in {}", o.name);
    }
    out
}

fn review_error(e: review::Error) -> super::Error {
    super::Error::Invalid(e.to_string())
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
