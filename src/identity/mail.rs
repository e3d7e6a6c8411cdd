//! Invitation e-mails over SMTP (lettre). Configured with `--smtp-url`:
//! `smtp://host:port` (plain, for a relay on loopback), `smtp://host:port?tls=starttls`, or
//! `smtps://host:port`; credentials from ROSTER_SMTP_USERNAME / ROSTER_SMTP_PASSWORD.

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--smtp-url {0:?}: expected smtp://HOST:PORT, smtp://HOST:PORT?tls=starttls or smtps://HOST:PORT"
    )]
    BadUrl(String),
    #[error(
        "--smtp-url {0:?} sends invitation links (bearer credentials) in clear text: use smtps:// or ?tls=starttls, or pass --smtp-allow-plaintext for a relay on this host"
    )]
    Plaintext(String),
    #[error("invalid e-mail address {0:?}: {1}")]
    Address(String, String),
    #[error("the SMTP server did not take the invitation: {0}")]
    Send(String),
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::BadUrl(_) => "SmtpBadUrl",
            Error::Plaintext(_) => "SmtpPlaintext",
            Error::Address(..) => "SmtpBadAddress",
            Error::Send(_) => "SmtpSendFailed",
        }
    }
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// `allow_plaintext` must be set for `smtp://` without TLS: an invitation link is a bearer
    /// credential.
    pub fn new(
        url: &str,
        from: &str,
        credentials: Option<(String, String)>,
        allow_plaintext: bool,
    ) -> Result<Mailer, Error> {
        let bad = || Error::BadUrl(url.to_string());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let mut builder = match (scheme, query) {
            ("smtp", "") if !allow_plaintext => return Err(Error::Plaintext(url.to_string())),
            ("smtp", "") => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            ("smtp", "tls=starttls") => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| Error::Send(e.to_string()))?,
            ("smtps", "") => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| Error::Send(e.to_string()))?,
            _ => return Err(bad()),
        }
        .port(port)
        .timeout(Some(std::time::Duration::from_secs(10)));
        if let Some((user, password)) = credentials {
            builder = builder.credentials(Credentials::new(user, password));
        }
        let from = from.parse().map_err(|e: lettre::address::AddressError| {
            Error::Address(from.into(), e.to_string())
        })?;
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends the invitation; `link` is the only place the token appears.
    pub async fn send_invitation(
        &self,
        to: &str,
        organization: &str,
        link: &super::Secret,
        expires: &str,
    ) -> Result<(), Error> {
        let to_box: Mailbox = to
            .parse()
            .map_err(|e: lettre::address::AddressError| Error::Address(to.into(), e.to_string()))?;
        let body = format!(
            "You have been invited to the organization {organization}.\n\n\
             Accept the invitation and set your password here:\n\n{}\n\n\
             The link works once and expires at {expires}.\n\
             If you did not expect this, ignore this message.\n",
            link.expose()
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(format!("Invitation to {organization}"))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| Error::Send(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| Error::Send(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    #[test]
    fn urls() {
        for ok in [
            "smtp://mail.example:587?tls=starttls",
            "smtps://mail.example:465",
        ] {
            assert!(
                Mailer::new(ok, "roster@acme.example", None, false).is_ok(),
                "{ok}"
            );
        }
        // Links are bearer credentials: clear text only when asked for explicitly.
        assert_eq!(
            Mailer::new("smtp://127.0.0.1:2525", "roster@acme.example", None, false)
                .expect_err("plaintext")
                .reason(),
            "SmtpPlaintext"
        );
        assert!(Mailer::new("smtp://127.0.0.1:2525", "roster@acme.example", None, true).is_ok());
        for bad in [
            "127.0.0.1:25",
            "smtp://host",
            "http://host:25",
            "smtp://host:x",
            "smtp://h:25?tls=maybe",
        ] {
            let e = Mailer::new(bad, "roster@acme.example", None, true).expect_err(bad);
            assert_eq!(e.reason(), "SmtpBadUrl", "{bad}");
        }
        assert_eq!(
            Mailer::new("smtp://h:25", "not an address", None, true)
                .expect_err("from")
                .reason(),
            "SmtpBadAddress"
        );
    }
}
