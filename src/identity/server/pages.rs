//! The pages: accept invitation → password → (MFA required) TOTP enrolment → log in →
//! account. No cookies: each step carries what it needs in the form (the invitation token, or
//! a short-lived signed enrolment ticket), so there is no session to steal or to forge.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kube::ResourceExt;
use serde::Deserialize;

use super::html::{alert, esc, hidden, input, page, qr_svg};
use super::{AppState, LoginError, LoginOk, flow};
use crate::identity::service;
use crate::identity::token;
use crate::identity::totp::Seed;
use crate::identity::{Secret, invitation};
use crate::tls::ClientAddr;

pub async fn index() -> Redirect {
    Redirect::to("/login")
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    organization: String,
    #[serde(default)]
    email: String,
}

pub async fn login_form(Query(q): Query<LoginQuery>) -> Response {
    login_page(StatusCode::OK, &q.organization, &q.email, "", "")
}

fn login_page(status: StatusCode, org: &str, email: &str, error: &str, notice: &str) -> Response {
    let notice = if notice.is_empty() {
        String::new()
    } else {
        format!("<p class=\"ok\" role=\"status\">{}</p>", esc(notice))
    };
    let body = format!(
        "{notice}{}<form method=\"post\" action=\"/login\" aria-describedby=\"form-error\">{}{}{}{}\
         <p><small>The code is the 6 digits your authenticator app shows, if you have set one up.</small></p>\
         <button type=\"submit\">Log in</button></form>",
        alert(error),
        input(
            "organization",
            "Organization",
            "text",
            "organization",
            org,
            "required"
        ),
        input("email", "E-mail", "email", "username", email, "required"),
        input(
            "password",
            "Password",
            "password",
            "current-password",
            "",
            "required"
        ),
        input(
            "code",
            "Authentication code",
            "text",
            "one-time-code",
            "",
            "inputmode=\"numeric\" pattern=\"[0-9]{6}\" maxlength=\"6\""
        ),
    );
    page(status, "Log in", &body)
}

#[derive(Deserialize)]
pub struct LoginForm {
    organization: String,
    email: String,
    password: String,
    #[serde(default)]
    code: String,
}

pub fn client(addr: Option<&ClientAddr>, headers: &HeaderMap) -> (Option<String>, Option<String>) {
    (
        addr.map(|a| a.0.ip().to_string()),
        headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    )
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let (source_ip, user_agent) = client(addr.as_deref(), &headers);
    let req = flow::Request {
        organization: f.organization.trim().to_string(),
        email: f.email.trim().to_string(),
        password: Secret::new(f.password),
        code: Some(f.code.trim().to_string()).filter(|c| !c.is_empty()),
        source_ip,
        user_agent,
    };
    match flow::login(&state, &req).await {
        Ok(LoginOk::Session { membership, .. }) => account(&state, &membership),
        Ok(LoginOk::MustEnrol { ticket }) => {
            match state
                .identity
                .begin_enrolment(&req.organization, &membership_email(&state, &ticket))
                .await
            {
                Ok(seed) => enrol_page(
                    StatusCode::OK,
                    &state,
                    &ticket,
                    &seed,
                    &membership_email(&state, &ticket),
                    "Your organization requires two-factor authentication. Set it up to continue.",
                    "",
                ),
                Err(e) => error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            }
        }
        Err(e) => {
            let mut page = login_page(
                super::api::login_status(&e),
                &req.organization,
                &req.email,
                &e.to_string(),
                "",
            );
            with_retry_after(&mut page, &e);
            page
        }
    }
}

fn with_retry_after(r: &mut Response, e: &LoginError) {
    if let Some((k, v)) = super::api::retry_header(e)
        && let Ok(v) = axum::http::HeaderValue::from_str(&v)
    {
        r.headers_mut().insert(k, v);
    }
}

/// A request from this address over its limit: the page that says so, with Retry-After.
fn limited(state: &AppState, addr: Option<&ClientAddr>) -> Option<Response> {
    let ip = addr.map(|a| a.0.ip().to_string());
    let wait = state.limits.source(ip.as_deref()).err()?;
    let e = LoginError::RateLimited(flow::retry_after(wait));
    let mut page = error_page(StatusCode::TOO_MANY_REQUESTS, &e.to_string());
    with_retry_after(&mut page, &e);
    Some(page)
}

fn membership_email(state: &AppState, ticket: &Secret) -> String {
    flow::enrol_ticket_now(state, ticket.expose(), super::now())
        .map(|c| c.email)
        .unwrap_or_default()
}

/// The member's standing in the organization they logged in to — and only that one: the
/// same address in another organization is another identity, under another policy, and none
/// of this login's business.
fn account(state: &AppState, m: &crate::api::Membership) -> Response {
    let email = &m.spec.email;
    let mut rows = String::new();
    {
        let x = m;
        let st = x.status.clone().unwrap_or_default();
        let show = |v: Option<String>| esc(&v.unwrap_or_else(|| "—".into()));
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&x.namespace().unwrap_or_default()),
            show(st.effective_role.map(|r| format!("{r:?}"))),
            show(st.phase.map(|p| format!("{p:?}"))),
            show(st.mfa.as_ref().map(|m| format!("{:?}", m.state))),
            show(Some(st.summary())),
        ));
    }
    let org = m.namespace().unwrap_or_default();
    let kubectl = match &state.cluster {
        // No credential inside (the plugin asks for the password): safe to show.
        Some(access) => {
            use base64::Engine;
            let text = crate::identity::kubeconfig::render(
                access,
                state.identity.public_url(),
                &org,
                email,
            );
            let href = format!(
                "data:application/yaml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
            );
            format!(
                "<p><a href=\"{}\" download=\"{}\">Download your kubeconfig</a> for {}: kubectl asks for your password \
                 (and code) through <code>kubectl roster login</code>, installed as <code>kubectl-roster</code>.</p>\
                 <pre>{}</pre>",
                esc(&href),
                esc(&crate::identity::kubeconfig::file_name(&org)),
                esc(&org),
                esc(&text)
            )
        }
        None => format!(
            "<p>Use <code>kubectl roster login --organization {} --email {}</code> as your kubeconfig's \
             exec credential plugin.</p>",
            esc(&org),
            esc(email)
        ),
    };
    let body = format!(
        "<p class=\"ok\" role=\"status\">Signed in as <strong>{}</strong>.</p>\
         <h2>Your organization</h2><table><caption class=\"sr\">Organization, role and MFA state</caption>\
         <thead><tr><th scope=\"col\">Organization</th><th scope=\"col\">Role</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">MFA</th><th scope=\"col\">Access</th></tr></thead><tbody>{rows}</tbody></table>\
         <h2>kubectl</h2>{kubectl}<p><a href=\"/login\">Log out</a></p>",
        esc(email),
    );
    page(StatusCode::OK, "Account", &body)
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Something went wrong",
        &format!(
            "{}<p><a href=\"/login\">Back to log in</a></p>",
            alert(message)
        ),
    )
}

#[derive(Deserialize)]
pub struct AcceptQuery {
    #[serde(default)]
    org: String,
    #[serde(default)]
    member: String,
    #[serde(default)]
    token: String,
}

/// A link that opens nothing, answered no sooner than the failure floor after arrival: a name
/// that is nobody's is refused from the caches, a real member's may cost an API read first.
/// The work is observed like a failed login's, so that a read slower than the floor raises it
/// for every refusal (red team 19b: a real name answered after a slow read, a made-up one at
/// the floor, and an outsider told Membership names apart).
async fn refused_link(
    state: &AppState,
    arrived: tokio::time::Instant,
    e: &service::Error,
) -> Response {
    let floor = &state.limits.failure_floor;
    floor.observe(arrived.elapsed());
    tokio::time::sleep_until(arrived + floor.now()).await;
    invitation_error(e)
}

fn invitation_error(e: &service::Error) -> Response {
    match e {
        service::Error::Invitation(invitation::Error::Expired) => page(
            StatusCode::GONE,
            "Invitation expired",
            &alert("This invitation has expired. Ask an admin of your organization to resend it."),
        ),
        service::Error::Invitation(invitation::Error::Unknown) => page(
            StatusCode::NOT_FOUND,
            "Invitation not valid",
            &alert(
                "This invitation link is not valid: it was already used, or a newer one was sent. Ask an admin to resend it, or log in if you already accepted it.",
            ),
        ),
        // The credential store failing (an API server outage) is answered like a link that
        // is not valid: only Memberships that exist ever reach the store, so a 503 would tell
        // an outsider which names are members. roster's log says what happened.
        other => {
            tracing::warn!(reason = crate::reason::Reason::reason(other), error = %other, "an invitation could not be checked");
            invitation_error(&invitation::Error::Unknown.into())
        }
    }
}

/// The invited Membership, by name from the caches, if it may accept now: not disabled,
/// expired, being deleted or cut off by a change the caches have not seen yet. A member who
/// may not accept sees the same page as for an unknown link.
/// With the member, the rights the link must have been issued for (`access::invitation_scope`).
fn invited(
    state: &AppState,
    org: &str,
    member: &str,
) -> Option<(Arc<crate::api::Membership>, String)> {
    let m = state.memberships.get(org, member)?;
    let o = state.orgs.get(org, org)?;
    let scope = crate::access::invitation_scope(&o, &m);
    flow::refused(state, &m, super::now())
        .is_none()
        .then_some((m, scope))
}

pub async fn accept_form(
    State(state): State<Arc<AppState>>,
    addr: Option<axum::Extension<ClientAddr>>,
    Query(q): Query<AcceptQuery>,
) -> Response {
    let arrived = tokio::time::Instant::now();
    if let Some(page) = limited(&state, addr.as_deref()) {
        return page;
    }
    let Some((m, scope)) = invited(&state, &q.org, &q.member) else {
        return refused_link(&state, arrived, &invitation::Error::Unknown.into()).await;
    };
    if let Err(e) = state
        .identity
        .check_invitation(&m, &scope, &q.token, super::now())
        .await
    {
        return refused_link(&state, arrived, &e).await;
    }
    accept_page(
        StatusCode::OK,
        &q,
        &m.spec.email,
        min_length(&state, &q.org),
        "",
    )
}

/// The organization's own rule: its Organization is the one named after its namespace (an
/// object of the same name elsewhere is another organization's, red team of the cache store).
pub(super) fn min_length(state: &AppState, org: &str) -> u32 {
    state
        .orgs
        .get(org, org)
        .map_or(
            crate::api::SecurityPolicy::default().password_min_length,
            |o| o.spec.security.password_min_length,
        )
        .max(crate::identity::password::MIN_LENGTH_FLOOR as u32)
}

fn accept_page(
    status: StatusCode,
    q: &AcceptQuery,
    email: &str,
    min: u32,
    error: &str,
) -> Response {
    let body = format!(
        "<p>You are invited to <strong>{}</strong> as <strong>{}</strong>. Choose a password \
         (at least {min} characters; long passphrases are best).</p>{}\
         <form method=\"post\" action=\"/accept\">{}{}{}\
         <input type=\"hidden\" name=\"username\" autocomplete=\"username\" value=\"{}\">{}{}\
         <button type=\"submit\">Set password</button></form>",
        esc(&q.org),
        esc(email),
        alert(error),
        hidden("org", &q.org),
        hidden("member", &q.member),
        hidden("token", &q.token),
        esc(email),
        input(
            "password",
            "New password",
            "password",
            "new-password",
            "",
            &format!("required minlength=\"{min}\" maxlength=\"128\"")
        ),
        input(
            "confirm",
            "Repeat the password",
            "password",
            "new-password",
            "",
            "required"
        ),
    );
    page(status, "Accept invitation", &body)
}

#[derive(Deserialize)]
pub struct AcceptForm {
    org: String,
    member: String,
    token: String,
    password: String,
    confirm: String,
}

pub async fn accept(
    State(state): State<Arc<AppState>>,
    addr: Option<axum::Extension<ClientAddr>>,
    Form(f): Form<AcceptForm>,
) -> Response {
    let arrived = tokio::time::Instant::now();
    if let Some(page) = limited(&state, addr.as_deref()) {
        return page;
    }
    let q = AcceptQuery {
        org: f.org.clone(),
        member: f.member.clone(),
        token: f.token.clone(),
    };
    let Some((m, scope)) = invited(&state, &f.org, &f.member) else {
        return refused_link(&state, arrived, &invitation::Error::Unknown.into()).await;
    };
    let min = min_length(&state, &f.org);
    // The link first: nothing about the member (their address on the page, the password
    // rules) is shown to whoever does not hold a valid one.
    if let Err(e) = state
        .identity
        .check_invitation(&m, &scope, &f.token, super::now())
        .await
    {
        return refused_link(&state, arrived, &e).await;
    }
    if f.password != f.confirm {
        return accept_page(
            StatusCode::BAD_REQUEST,
            &q,
            &m.spec.email,
            min,
            "The two passwords differ.",
        );
    }
    let now = super::now();
    let outcome = state
        .identity
        .accept(&m, &scope, &f.token, &Secret::new(f.password), min, now)
        .await;
    match outcome {
        Ok(()) => {}
        Err(service::Error::Password(e)) => {
            return accept_page(
                StatusCode::BAD_REQUEST,
                &q,
                &m.spec.email,
                min,
                &e.to_string(),
            );
        }
        Err(e) => return refused_link(&state, arrived, &e).await,
    }
    let Some((o, m)) = flow::member(&state, &f.org, &m.spec.email) else {
        return error_page(StatusCode::NOT_FOUND, "the membership is gone");
    };
    if !flow::mfa_required(&o, &m, now) {
        return login_page(
            StatusCode::OK,
            &f.org,
            &m.spec.email,
            "",
            "Your password is set. Log in now.",
        );
    }
    let generation = match state.identity.record(&f.org, &m.spec.email).await {
        Ok(r) => r.generation,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let ticket = state
        .identity
        .sign(&flow::claims(&o, &m, generation, token::ENROL, &[], now));
    match state.identity.begin_enrolment(&f.org, &m.spec.email).await {
        Ok(seed) => enrol_page(
            StatusCode::OK,
            &state,
            &ticket,
            &seed,
            &m.spec.email,
            "Your password is set. Your organization requires two-factor authentication: set it up now.",
            "",
        ),
        Err(e) => error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn enrol_page(
    status: StatusCode,
    state: &AppState,
    ticket: &Secret,
    seed: &Seed,
    email: &str,
    notice: &str,
    error: &str,
) -> Response {
    let issuer = state
        .identity
        .public_url()
        .split("://")
        .nth(1)
        .unwrap_or("roster")
        .split(['/', ':'])
        .next()
        .unwrap_or("roster")
        .to_string();
    let url = seed.otpauth_url(&format!("roster {issuer}"), email);
    let qr = qr_svg(&url).unwrap_or_default();
    let secret = seed.base32();
    let grouped: Vec<String> = secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let body = format!(
        "<p class=\"ok\" role=\"status\">{}</p>{}\
         <ol><li>Scan this QR code with an authenticator app (any TOTP app):<br>\
         <img src=\"{qr}\" width=\"220\" height=\"220\" alt=\"QR code to add your roster account to an authenticator app\"></li>\
         <li>Or type this secret into the app: <span class=\"secret\" id=\"secret\">{}</span></li>\
         <li>Enter the 6-digit code the app shows.</li></ol>\
         <form method=\"post\" action=\"/enrol\">{}{}<button type=\"submit\">Confirm</button></form>",
        esc(notice),
        alert(error),
        esc(&grouped.join(" ")),
        hidden("ticket", ticket.expose()),
        input(
            "code",
            "Authentication code",
            "text",
            "one-time-code",
            "",
            "required inputmode=\"numeric\" pattern=\"[0-9]{6}\" maxlength=\"6\""
        ),
    );
    page(status, "Set up two-factor authentication", &body)
}

#[derive(Deserialize)]
pub struct EnrolForm {
    ticket: String,
    code: String,
}

pub async fn enrol(
    State(state): State<Arc<AppState>>,
    addr: Option<axum::Extension<ClientAddr>>,
    Form(f): Form<EnrolForm>,
) -> Response {
    if let Some(page) = limited(&state, addr.as_deref()) {
        return page;
    }
    let now = super::now();
    // The ticket, and the member's standing now: disabled, deleted, reset or locked since the
    // password was checked means no enrolment.
    let Some(c) = flow::enrol_ticket(&state, &f.ticket, now).await else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "This enrolment page has expired. Log in again to continue.",
        );
    };
    if let Err(wait) = state.limits.member(&c.org, &c.email) {
        let e = LoginError::RateLimited(flow::retry_after(wait));
        let mut page = error_page(StatusCode::TOO_MANY_REQUESTS, &e.to_string());
        with_retry_after(&mut page, &e);
        return page;
    }
    match state
        .identity
        .confirm_enrolment(&c.org, &c.email, f.code.trim(), (&c.uid, c.generation), now)
        .await
    {
        Ok(()) => login_page(
            StatusCode::OK,
            &c.org,
            &c.email,
            "",
            "Two-factor authentication is on. Log in with your password and a code.",
        ),
        Err(e @ service::Error::Totp(_)) => {
            let record = state
                .identity
                .record(&c.org, &c.email)
                .await
                .ok()
                .filter(|r| r.issued((&c.uid, c.generation)));
            match record.and_then(|r| state.identity.pending_seed(&c.org, &c.email, &r)) {
                Some(seed) => enrol_page(
                    StatusCode::BAD_REQUEST,
                    &state,
                    &Secret::new(f.ticket),
                    &seed,
                    &c.email,
                    "Try again with the current code.",
                    &e.to_string(),
                ),
                None => error_page(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
    .into_response()
}
