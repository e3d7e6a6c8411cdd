//! Admin commands on the cluster with the caller's own credentials: `invite link`, the request
//! annotations (`invite resend`, `unlock`, `reset-mfa`) and `security-log`.

use serde_json::json;

use super::{Error, Result, kube_client};
use crate::identity::audit;

/// `security-log ORG`: the organization's persisted security log, oldest first.
pub async fn security_log(org: &str, namespace: &str, as_json: bool) -> Result<()> {
    let (client, _) = kube_client(None).await?;
    let entries = audit::read(client, namespace, org)
        .await
        .map_err(|source| Error::Api {
            what: format!("cannot read the security log of {org}"),
            source,
        })?;
    if as_json {
        for e in &entries {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        }
        return Ok(());
    }
    println!(
        "{:<21} {:<26} {:<28} {:<18} {:<15} DETAIL",
        "TIME", "EVENT", "EMAIL", "REASON", "SOURCE"
    );
    for e in &entries {
        println!(
            "{:<21} {:<26} {:<28} {:<18} {:<15} {}",
            e.time,
            e.event,
            e.email.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-"),
            e.source_ip.as_deref().unwrap_or("-"),
            e.detail.as_deref().unwrap_or(""),
        );
    }
    if entries.is_empty() {
        eprintln!("no entries for organization {org} (in namespace {namespace})");
    }
    Ok(())
}

/// `invite link`: the member's invitation link, or why there is none. Each link has a
/// Secret of its own: the one the Membership's status names, or — while a change is held, a
/// status waits with it — one of the member's link RoleBindings names (owners and Admins read
/// those). The newest readable one is the live one: a replaced link's Secret is deleted, and
/// one left behind holds a dead link.
pub async fn invite_link(member: &str, namespace: Option<String>) -> Result<()> {
    use k8s_openapi::api::core::v1::Secret as KubeSecret;
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use k8s_openapi::jiff::Timestamp;
    let (client, ns) = kube_client(namespace).await?;
    let memberships: kube::Api<crate::api::Membership> = kube::Api::namespaced(client.clone(), &ns);
    let m = memberships
        .get_opt(member)
        .await
        .map_err(|source| Error::Api {
            what: format!("cannot read Membership {ns}/{member}"),
            source,
        })?
        .ok_or_else(|| {
            Error::NotFound(format!("there is no Membership {member} in namespace {ns}"))
        })?;
    let inv = m.status.and_then(|s| s.invitation);
    let mut names: Vec<String> = inv.iter().filter_map(|i| i.secret_name.clone()).collect();
    // Not only when the status says Pending: a link resent during a hold, after the one
    // the status shows expired, is there too (red team 25).
    if inv.as_ref().is_none_or(|i| {
        i.state != Some(crate::api::InvitationState::Accepted)
            && i.delivery.as_deref() != Some("Email")
    }) {
        let selector = format!("{}={member}", crate::api::contract::MEMBERSHIP_LABEL);
        let bindings: kube::Api<RoleBinding> = kube::Api::namespaced(client.clone(), &ns);
        // Not allowed to list them: the status's name is all there is to try.
        if let Ok(list) = bindings
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
        {
            names.extend(
                list.items
                    .into_iter()
                    .filter(|rb| {
                        rb.role_ref.kind == "Role"
                            && rb
                                .role_ref
                                .name
                                .starts_with(&format!("roster-invitation-{member}"))
                    })
                    .map(|rb| rb.role_ref.name),
            );
        }
    }
    names.sort();
    names.dedup();
    let secrets: kube::Api<KubeSecret> = kube::Api::namespaced(client, &ns);
    let mut refused = false;
    let mut readable = Vec::new();
    for name in &names {
        match secrets.get_opt(name).await {
            Ok(Some(s)) => {
                let created = s.metadata.creation_timestamp.clone();
                let mut data = s.data.unwrap_or_default();
                // A link past its expiry opens nothing: not printed as if it did.
                let expired = data
                    .get("expiresAt")
                    .and_then(|e| String::from_utf8_lossy(&e.0).parse::<Timestamp>().ok())
                    .is_some_and(|at| at <= Timestamp::now());
                if let Some(link) = data.remove("link").filter(|_| !expired) {
                    readable.push((created, link));
                }
            }
            Ok(None) => {}
            Err(kube::Error::Api(s)) if s.code == 403 => refused = true,
            Err(source) => {
                return Err(Error::Api {
                    what: format!("cannot read Secret {ns}/{name}"),
                    source,
                });
            }
        }
    }
    if let Some((_, link)) = readable.into_iter().max_by(|a, b| a.0.cmp(&b.0)) {
        println!("{}", String::from_utf8_lossy(&link.0));
        return Ok(());
    }
    if refused {
        return Err(Error::Refused(format!(
            "you may not read {member}'s invitation link: a link sets the member's password, so only the owner and platform admins read any, and an Admin only those of Members whose projects they all administer"
        )));
    }
    Err(Error::NotFound(match inv {
        Some(i) if i.state == Some(crate::api::InvitationState::Accepted) => {
            format!("{member} has accepted their invitation; there is no link any more")
        }
        Some(i) if i.state == Some(crate::api::InvitationState::Expired) => {
            format!(
                "{member}'s invitation has expired; `roster invite resend {member}` issues a new one"
            )
        }
        Some(i) if i.delivery.as_deref() == Some("Email") => {
            format!(
                "{member}'s invitation went by e-mail; `roster invite resend {member}` sends a new one"
            )
        }
        Some(i) if i.secret_name.is_some() => {
            format!("{member}'s invitation link was just replaced; run this again in a moment")
        }
        _ => format!(
            "no invitation link for {member} yet: is roster running with --identity-addr? (kubectl describe membership {member} -n {ns})"
        ),
    }))
}

/// `unlock`, `reset-mfa`, `invite resend`: a request annotation with a new nonce, which roster
/// acts on once (DESIGN.md §2). The admission webhook decides who may ask.
pub async fn request(
    request: crate::api::contract::Request,
    member: &str,
    namespace: Option<String>,
) -> Result<()> {
    let kind = request.kind();
    let (client, ns) = kube_client(namespace).await?;
    let api: kube::Api<crate::api::Membership> = kube::Api::namespaced(client, &ns);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().to_string())
        .unwrap_or_default();
    let patch = json!({"metadata": {"annotations": {request.annotation(): nonce}}});
    api.patch(
        member,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .map_err(|e| match e {
        kube::Error::Api(s) => Error::Refused(format!("{kind} of {member} refused: {}", s.message)),
        source => Error::Api {
            what: "cannot reach the API server".into(),
            source,
        },
    })?;
    println!(
        "requested {kind} for {member} in {ns}; roster acts on it once (kubectl describe membership {member} -n {ns})"
    );
    Ok(())
}
