//! Invitation e-mail through a real SMTP server on loopback (Python's aiosmtpd, installed by
//! scripts/test-deps.sh), and a clear error when the server is not there.

use roster::Reason;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use roster::identity::Secret;
use roster::identity::mail::Mailer;

use crate::harness::{free_addr, own_loopback, root, wait_for};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn aiosmtpd() -> std::path::PathBuf {
    let dir = root().join("target/test-deps");
    std::fs::read_dir(&dir)
        .ok()
        .and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("bin/aiosmtpd"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!(
                "aiosmtpd is missing under {}: run scripts/test-deps.sh (make test does)",
                dir.display()
            )
        })
}

#[tokio::test]
async fn invitations_are_mailed_through_a_real_smtp_server() {
    let addr = free_addr(&own_loopback());
    let maildir = root().join(format!(
        "target/cluster-test/maildir-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&maildir);
    let _server = Server(
        Command::new(aiosmtpd())
            .args(["-n", "-l", &addr, "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd"),
    );
    wait_for("aiosmtpd to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).ok()
    });

    let mailer =
        Mailer::new(&format!("smtp://{addr}"), "roster@acme.example", None, true).expect("mailer");
    let link = Secret::new("https://id.acme.example/accept?org=acme&member=bob&token=T0KEN");
    mailer
        .send_invitation("bob@acme.example", "acme", &link, "2026-12-01T00:00:00Z")
        .await
        .expect("sent");
    let message = wait_for(
        "the message in the mailbox",
        Duration::from_secs(10),
        || {
            let entry = std::fs::read_dir(maildir.join("new"))
                .ok()?
                .flatten()
                .next()?;
            std::fs::read_to_string(entry.path()).ok()
        },
    );
    assert!(message.contains("To: bob@acme.example"), "{message}");
    assert!(message.contains("From: roster@acme.example"), "{message}");
    assert!(message.contains("Subject: Invitation to acme"), "{message}");
    assert!(
        message.contains("token=T0KEN"),
        "the link is in the body: {message}"
    );
    assert!(
        message.contains("expires at 2026-12-01T00:00:00Z"),
        "{message}"
    );

    // Nobody listening: a clear, specific error, not a hang.
    let dead = Mailer::new(
        &format!("smtp://{}", free_addr(&own_loopback())),
        "roster@acme.example",
        None,
        true,
    )
    .expect("mailer");
    let err = dead
        .send_invitation("bob@acme.example", "acme", &link, "2026-12-01T00:00:00Z")
        .await
        .expect_err("no server");
    assert_eq!(err.reason(), "SmtpSendFailed");
    assert!(
        !err.to_string().contains("T0KEN"),
        "no secret in the error: {err}"
    );
    // An address lettre cannot send to.
    let err = mailer
        .send_invitation("not an address", "acme", &link, "x")
        .await
        .expect_err("bad address");
    assert_eq!(err.reason(), "SmtpBadAddress");
}
