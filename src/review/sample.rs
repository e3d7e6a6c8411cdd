//! Generated organizations for tests and benchmarks: `orgs` × `projects` × `members`, with every
//! org and project role, some disabled and expired members, MFA required in every third
//! organization — the shapes a real tree has, at any size.

use std::fmt::Write;

/// Multi-document YAML, namespaces included (organizations `<prefix>00`, `<prefix>01`, …);
/// dates relative to `now`.
pub fn tree_yaml(
    prefix: &str,
    orgs: usize,
    projects: usize,
    members: usize,
    now: k8s_openapi::jiff::Timestamp,
) -> String {
    let past = now
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_hours(24))
        .unwrap_or(now);
    let mut y = String::with_capacity(orgs * (projects * 150 + members * 260 + 400));
    for o in 0..orgs {
        let org = format!("{prefix}{o:02}");
        let mfa = o % 3 == 0;
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {org}\n---\napiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: {org}\n  namespace: {org}\nspec:\n  owner: m000@{org}.example\n  defaultRole: Member\n  security:\n    mfa:\n      required: {mfa}\n      gracePeriod: 72h\n"
        );
        for p in 0..projects {
            let _ = write!(
                y,
                "---\napiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata:\n  name: p{p:02}\n  namespace: {org}\nspec:\n  namespaceDeletion: Delete\n"
            );
        }
        for m in 0..members {
            let role = if m % 10 == 0 { "Admin" } else { "Member" };
            let _ = write!(
                y,
                "---\napiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata:\n  name: m{m:03}\n  namespace: {org}\nspec:\n  email: m{m:03}@{org}.example\n  role: {role}\n"
            );
            if projects > 0 {
                let _ = write!(
                    y,
                    "  projects:\n    - name: p{:02}\n      role: {}\n",
                    m % projects,
                    ["Admin", "Developer", "Viewer"][m % 3]
                );
                if projects > 1 {
                    let _ = write!(
                        y,
                        "    - name: p{:02}\n      role: Viewer\n",
                        (m + 1) % projects
                    );
                }
            }
            if m % 25 == 7 {
                y.push_str("  disabled: true\n");
            }
            if m % 30 == 11 {
                let _ = writeln!(y, "  expiresAt: \"{past}\"");
            }
        }
    }
    y
}
