//! Access as a set of grants — who holds which role where — and the difference between two such
//! sets. One vocabulary for `roster diff` (grants from two evaluations) and the controller's
//! blast-radius guard (grants from the RoleBindings it observes and those it would write), so
//! that "removes 12 grants" means the same in a pull-request comment and in `Stalled=True`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::api::{EffectiveRole, ProjectRole};

/// Where a grant applies: the organization itself (its org role) or one project.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "name")]
pub enum Scope {
    Organization,
    Project(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Organization => f.write_str("organization"),
            Scope::Project(p) => write!(f, "project {p}"),
        }
    }
}

/// A role, ranked within its scope (Owner > Admin > Member; Admin > Developer > Viewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Role {
    Member,
    OrgAdmin,
    Owner,
    Viewer,
    Developer,
    ProjectAdmin,
}

impl Role {
    pub fn rank(self) -> u8 {
        match self {
            Role::Member | Role::Viewer => 1,
            Role::OrgAdmin | Role::Developer => 2,
            Role::Owner | Role::ProjectAdmin => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "Member",
            Role::OrgAdmin | Role::ProjectAdmin => "Admin",
            Role::Owner => "Owner",
            Role::Viewer => "Viewer",
            Role::Developer => "Developer",
        }
    }
}

impl From<EffectiveRole> for Role {
    fn from(r: EffectiveRole) -> Role {
        match r {
            EffectiveRole::Owner => Role::Owner,
            EffectiveRole::Admin => Role::OrgAdmin,
            EffectiveRole::Member => Role::Member,
        }
    }
}

impl From<ProjectRole> for Role {
    fn from(r: ProjectRole) -> Role {
        match r {
            ProjectRole::Admin => Role::ProjectAdmin,
            ProjectRole::Developer => Role::Developer,
            ProjectRole::Viewer => Role::Viewer,
        }
    }
}

/// Who: an e-mail within an organization (the organization's namespace).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Person {
    pub organization: String,
    pub email: String,
}

/// Every grant, by person and scope (at most one role per scope: the highest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants(pub BTreeMap<(Person, Scope), Role>);

impl Grants {
    pub fn insert(&mut self, organization: &str, email: &str, scope: Scope, role: Role) {
        let key = (
            Person {
                organization: organization.to_string(),
                email: email.to_string(),
            },
            scope,
        );
        let e = self.0.entry(key).or_insert(role);
        if role.rank() > e.rank() {
            *e = role;
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Kind {
    Gained,
    Raised,
    Lowered,
    Lost,
}

impl Kind {
    /// Whether this change takes access away (a lost grant, or a lower role).
    pub fn removes(self) -> bool {
        matches!(self, Kind::Lowered | Kind::Lost)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub person: Person,
    pub scope: Scope,
    pub kind: Kind,
    pub before: Option<Role>,
    pub after: Option<Role>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = |r: Option<Role>| r.map_or("-", Role::as_str);
        match self.kind {
            Kind::Gained => write!(
                f,
                "{} gains {} in {}",
                self.person.email,
                role(self.after),
                self.scope
            ),
            Kind::Lost => write!(
                f,
                "{} loses {} in {}",
                self.person.email,
                role(self.before),
                self.scope
            ),
            Kind::Raised | Kind::Lowered => write!(
                f,
                "{} goes from {} to {} in {}",
                self.person.email,
                role(self.before),
                role(self.after),
                self.scope
            ),
        }
    }
}

/// What changes from `before` to `after`, ordered by person, then scope.
pub fn diff(before: &Grants, after: &Grants) -> Vec<Change> {
    let keys: BTreeSet<&(Person, Scope)> = before.0.keys().chain(after.0.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (b, a) = (before.0.get(k).copied(), after.0.get(k).copied());
            let kind = match (b, a) {
                (None, Some(_)) => Kind::Gained,
                (Some(_), None) => Kind::Lost,
                (Some(x), Some(y)) if y.rank() > x.rank() => Kind::Raised,
                (Some(x), Some(y)) if y.rank() < x.rank() => Kind::Lowered,
                _ => return None,
            };
            Some(Change {
                person: k.0.clone(),
                scope: k.1.clone(),
                kind,
                before: b,
                after: a,
            })
        })
        .collect()
}

pub fn removals(changes: &[Change]) -> usize {
    changes.iter().filter(|c| c.kind.removes()).count()
}

/// A short, stable fingerprint of a set of removals: acknowledging it (the Organization's
/// `roster.dev/accept-removals` annotation) lets exactly that change through, not the next one.
pub fn fingerprint(changes: &[Change]) -> String {
    let mut lines: Vec<String> = changes
        .iter()
        .filter(|c| c.kind.removes())
        .map(|c| {
            format!(
                "{}\t{}\t{}\t{}",
                c.person.organization,
                c.person.email,
                c.scope,
                c.before.map_or("-", Role::as_str)
            )
        })
        .collect();
    lines.sort();
    let digest = ring::digest::digest(&ring::digest::SHA256, lines.join("\n").as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[(&str, Scope, Role)]) -> Grants {
        let mut g = Grants::default();
        for (email, scope, role) in list {
            g.insert("acme", email, scope.clone(), *role);
        }
        g
    }

    fn p(name: &str) -> Scope {
        Scope::Project(name.into())
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn differences_by_kind() {
        use Role::*;
        let cases: Vec<(&str, Grants, Grants, Vec<(&str, Scope, Kind)>)> = vec![
            (
                "nothing changes",
                grants(&[("bob", p("web"), Viewer)]),
                grants(&[("bob", p("web"), Viewer)]),
                vec![],
            ),
            (
                "a new grant",
                grants(&[]),
                grants(&[("bob", p("web"), Viewer)]),
                vec![("bob", p("web"), Kind::Gained)],
            ),
            (
                "a lost grant",
                grants(&[("bob", p("web"), Viewer)]),
                grants(&[]),
                vec![("bob", p("web"), Kind::Lost)],
            ),
            (
                "Viewer to Admin",
                grants(&[("bob", p("web"), Viewer)]),
                grants(&[("bob", p("web"), ProjectAdmin)]),
                vec![("bob", p("web"), Kind::Raised)],
            ),
            (
                "Admin to Developer",
                grants(&[("bob", p("web"), ProjectAdmin)]),
                grants(&[("bob", p("web"), Developer)]),
                vec![("bob", p("web"), Kind::Lowered)],
            ),
            (
                "owner hand-over",
                grants(&[
                    ("alice", Scope::Organization, Owner),
                    ("bob", Scope::Organization, OrgAdmin),
                ]),
                grants(&[
                    ("alice", Scope::Organization, OrgAdmin),
                    ("bob", Scope::Organization, Owner),
                ]),
                vec![
                    ("alice", Scope::Organization, Kind::Lowered),
                    ("bob", Scope::Organization, Kind::Raised),
                ],
            ),
            (
                "moved between projects",
                grants(&[("bob", p("a"), Developer)]),
                grants(&[("bob", p("b"), Developer)]),
                vec![("bob", p("a"), Kind::Lost), ("bob", p("b"), Kind::Gained)],
            ),
        ];
        for (name, before, after, want) in cases {
            let got: Vec<(String, Scope, Kind)> = diff(&before, &after)
                .into_iter()
                .map(|c| (c.person.email, c.scope, c.kind))
                .collect();
            let want: Vec<(String, Scope, Kind)> = want
                .into_iter()
                .map(|(e, s, k)| (e.to_string(), s, k))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn the_highest_role_of_a_scope_counts() {
        let mut g = Grants::default();
        g.insert("acme", "bob", p("web"), Role::Viewer);
        g.insert("acme", "bob", p("web"), Role::ProjectAdmin);
        g.insert("acme", "bob", p("web"), Role::Developer);
        assert_eq!(
            g.0.values().copied().collect::<Vec<_>>(),
            vec![Role::ProjectAdmin]
        );
    }

    #[test]
    fn the_fingerprint_names_exactly_one_set_of_removals() {
        use Role::*;
        let base = grants(&[("bob", p("web"), Viewer), ("carl", p("web"), Viewer)]);
        let one = diff(&base, &grants(&[("carl", p("web"), Viewer)]));
        let other = diff(&base, &grants(&[("bob", p("web"), Viewer)]));
        let one_plus_gain = diff(
            &base,
            &grants(&[("carl", p("web"), Viewer), ("dave", p("web"), Viewer)]),
        );
        assert_eq!(fingerprint(&one).len(), 12);
        assert_ne!(fingerprint(&one), fingerprint(&other));
        assert_eq!(
            fingerprint(&one),
            fingerprint(&one_plus_gain),
            "gains do not change what is acknowledged"
        );
        assert_eq!(removals(&one), 1);
    }
}
