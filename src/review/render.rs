//! Reports as a terminal table, Markdown (a pull-request comment) or JSON.

use std::fmt::Write;

use k8s_openapi::jiff::Timestamp;

use super::diff::Diff;
use super::report::{OrgReport, PersonReport, Report};
use super::tree::Violation;
use crate::api::MfaState;
use crate::grants::Kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Json,
}

fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// The state column: why a person holds less than declared.
fn state(p: &PersonReport, project: Option<&str>) -> String {
    if let Some(c) = &p.cut_off {
        let mut s = format!("cut off: {}", c.message);
        if c.reason == "MfaOverdue"
            && let Some(d) = p.mfa_deadline
        {
            let _ = write!(s, " (since {})", when(d));
        }
        return s;
    }
    if let Some(why) = project.and_then(|pr| p.refused.get(pr)) {
        return format!("no access: {why}");
    }
    match (p.mfa, p.mfa_deadline) {
        (MfaState::Pending, Some(d)) => format!("MFA due {}", when(d)),
        (MfaState::Exempt, _) => "MFA exempt".into(),
        _ => String::new(),
    }
}

/// Rows of (project, namespace, member, role, state) for one organization: the organization's
/// own roles first, then each project's holders and the people cut off from it.
fn rows(o: &OrgReport) -> Vec<[String; 5]> {
    let mut out = Vec::new();
    for p in &o.people {
        out.push([
            "(organization)".into(),
            o.name.clone(),
            p.email.clone(),
            format!("{:?}", p.role),
            state(p, None),
        ]);
    }
    for pr in &o.projects {
        for p in &o.people {
            let role = p.projects.get(&pr.name);
            if role.is_none() && !p.refused.contains_key(&pr.name) {
                continue;
            }
            out.push([
                pr.name.clone(),
                pr.namespace.clone(),
                p.email.clone(),
                role.map_or("-".to_string(), |r| r.as_str().to_string()),
                state(p, Some(&pr.name)),
            ]);
        }
    }
    out
}

fn table(header: [&str; 5], rows: &[[String; 5]], out: &mut String) {
    let mut width = header.map(str::len);
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5], out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = width[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header, out);
    for r in rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]], out);
    }
}

/// Text from a tree (names, messages quoting values) cannot become Markdown — a link, an
/// image, a heading — in a pull-request comment.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '<' | '>' | '!' | '#' | '|' | '~'
            | '&' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A file path in a Markdown code span: no backtick can end it early.
fn md_code(s: &str) -> String {
    s.replace('`', "'").replace(['\n', '\r'], " ")
}

/// Text from a tree on a terminal: no control character (an escape sequence in a parser's
/// quote of a hostile file would otherwise reach the reviewer's terminal or CI log).
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\n' || c == '\t' || !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The violations as a Markdown list under a heading of `level`.
fn md_violations(v: &[Violation], level: &str, out: &mut String) {
    if v.is_empty() {
        return;
    }
    let _ = writeln!(out, "{level} {} violation(s)\n", v.len());
    for x in v {
        let _ = writeln!(
            out,
            "- `{}` {} — **{}**: {}",
            md_code(x.at.as_deref().unwrap_or("-")),
            md_escape(&x.object),
            x.rule,
            md_escape(&x.message)
        );
    }
}

pub fn violations(v: &[Violation], out: &mut String) {
    for x in v {
        match &x.at {
            Some(at) => {
                let _ = writeln!(
                    out,
                    "{}: {}: [{}] {}",
                    plain(at),
                    plain(&x.object),
                    x.rule,
                    plain(&x.message)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{}: [{}] {}",
                    plain(&x.object),
                    x.rule,
                    plain(&x.message)
                );
            }
        }
    }
}

pub fn plan(report: &Report, violations_: &[Violation], format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "now": report.now,
                "violations": violations_,
                "organizations": report.organizations,
            });
            out = serde_json::to_string_pretty(&v).unwrap_or_default();
            out.push('\n');
        }
        Format::Table => {
            for o in &report.organizations {
                let _ = writeln!(
                    out,
                    "Organization {} — owner {}, MFA {}",
                    o.name,
                    o.owner.as_deref().unwrap_or("(none)"),
                    if o.mfa_required {
                        "required"
                    } else {
                        "optional"
                    }
                );
                table(
                    ["PROJECT", "NAMESPACE", "MEMBER", "ROLE", "STATE"],
                    &rows(o),
                    &mut out,
                );
                for p in &o.problems {
                    let _ = writeln!(out, "  ! {p}");
                }
                out.push('\n');
            }
            if !violations_.is_empty() {
                let _ = writeln!(out, "{} violation(s):", violations_.len());
                violations(violations_, &mut out);
            }
        }
        Format::Markdown => {
            for o in &report.organizations {
                let _ = writeln!(
                    out,
                    "### Organization `{}`\n\nOwner: {} · MFA {}\n",
                    o.name,
                    o.owner.as_deref().unwrap_or("(none)"),
                    if o.mfa_required {
                        "required"
                    } else {
                        "optional"
                    }
                );
                out.push_str(
                    "| Project | Namespace | Member | Role | State |\n|---|---|---|---|---|\n",
                );
                for r in rows(o) {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} |",
                        md_escape(&r[0]),
                        md_escape(&r[1]),
                        md_escape(&r[2]),
                        md_escape(&r[3]),
                        md_escape(&r[4])
                    );
                }
                for p in &o.problems {
                    let _ = writeln!(out, "\n> ⚠️ {}", md_escape(p));
                }
                out.push('\n');
            }
            md_violations(violations_, "###", &mut out);
        }
    }
    out
}

pub fn diff(
    d: &Diff,
    violations_: &[Violation],
    max_removals: Option<usize>,
    format: Format,
) -> String {
    let mut out = String::new();
    let gained = d.changes.iter().filter(|c| !c.kind.removes()).count();
    let over = max_removals.is_some_and(|m| d.removals > m);
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "removals": d.removals,
                "gained": gained,
                "maxRemovals": max_removals,
                "overLimit": over,
                "fingerprint": d.fingerprint,
                "changes": d.changes,
                "owners": d.owners,
                "cutOffs": d.cut_offs,
                "violations": violations_,
            });
            out = serde_json::to_string_pretty(&v).unwrap_or_default();
            out.push('\n');
        }
        Format::Table => {
            let _ = writeln!(out, "{} grant(s) removed, {} gained", d.removals, gained);
            for o in &d.owners {
                let _ = writeln!(
                    out,
                    "owner of {}: {} → {}",
                    o.organization,
                    o.before.as_deref().unwrap_or("(none)"),
                    o.after.as_deref().unwrap_or("(organization removed)")
                );
            }
            for c in &d.changes {
                let sign = if c.kind.removes() { "-" } else { "+" };
                let _ = writeln!(out, "  {sign} {}: {c}", c.person.organization);
            }
            if !d.cut_offs.is_empty() {
                let _ = writeln!(out, "cut-offs:");
                for c in &d.cut_offs {
                    let _ = writeln!(
                        out,
                        "  {} {}/{}: {}",
                        when(c.at),
                        c.organization,
                        c.email,
                        c.why
                    );
                }
            }
            if d.removals > 0 {
                let _ = writeln!(
                    out,
                    "removals fingerprint: {} (annotate the Organization roster.dev/accept-removals={} to let roster apply them past spec.maxAccessRemovals)",
                    d.fingerprint, d.fingerprint
                );
            }
            if over {
                let _ = writeln!(
                    out,
                    "more than {} removals: refused",
                    max_removals.unwrap_or(0)
                );
            }
            if !violations_.is_empty() {
                let _ = writeln!(out, "{} violation(s):", violations_.len());
                violations(violations_, &mut out);
            }
        }
        Format::Markdown => {
            let _ = writeln!(out, "### roster: who gains and loses access\n");
            let _ = writeln!(
                out,
                "**{} grant(s) removed**, {} gained{}.\n",
                d.removals,
                gained,
                max_removals.map_or(String::new(), |m| format!(
                    " (limit {m}{})",
                    if over { ": **over the limit**" } else { "" }
                ))
            );
            for o in &d.owners {
                let _ = writeln!(
                    out,
                    "- 👑 Owner of `{}`: {} → {}",
                    o.organization,
                    o.before.as_deref().unwrap_or("(none)"),
                    o.after.as_deref().unwrap_or("(organization removed)")
                );
            }
            if !d.owners.is_empty() {
                out.push('\n');
            }
            if !d.changes.is_empty() {
                out.push_str("| | Person | Organization | Where | Before | After |\n|---|---|---|---|---|---|\n");
                for c in &d.changes {
                    let mark = match c.kind {
                        Kind::Lost => "➖",
                        Kind::Lowered => "🔽",
                        Kind::Raised => "🔼",
                        Kind::Gained => "➕",
                    };
                    let _ = writeln!(
                        out,
                        "| {mark} | {} | {} | {} | {} | {} |",
                        md_escape(&c.person.email),
                        c.person.organization,
                        c.scope,
                        c.before.map_or("-", |r| r.as_str()),
                        c.after.map_or("-", |r| r.as_str())
                    );
                }
                out.push('\n');
            }
            if !d.cut_offs.is_empty() {
                out.push_str("#### Cut-offs\n\n");
                for c in &d.cut_offs {
                    let _ = writeln!(
                        out,
                        "- **{}** `{}` ({}): {}",
                        when(c.at),
                        md_escape(&c.email),
                        c.organization,
                        md_escape(&c.why)
                    );
                }
                out.push('\n');
            }
            if d.removals > 0 {
                let _ = writeln!(
                    out,
                    "Removals fingerprint `{}`: if roster holds this change back (`Stalled`, more removals than `spec.maxAccessRemovals`), annotate the Organization `roster.dev/accept-removals: \"{}\"`.\n",
                    d.fingerprint, d.fingerprint
                );
            }
            md_violations(violations_, "####", &mut out);
        }
    }
    out
}
