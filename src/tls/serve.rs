//! The accept loop every listener uses: TLS by rustls, HTTP/1.1 or HTTP/2 by hyper, an axum
//! router; bounded in every way a client could hold it.
//!
//! - A TLS handshake gets 10 s.
//! - A connection must complete a request's headers within 10 s of opening, and within 10 s of
//!   going quiet later (HTTP/1's header timeout; for HTTP/2, where hyper has none, a connection
//!   with no request in progress and no request started for that long is closed). A quiet
//!   connection is told to go away (GOAWAY / close) and, if it does not finish, dropped 2 s on.
//! - At most 256 connections per client address and 4096 in all; more are closed at once.
//! - On shutdown: no new connections; open ones finish the requests they carry and are told to
//!   go away, so a client such as the API server moves to another replica without a failed
//!   call; after 8 s the rest are dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::{Error, Result};

/// A TLS handshake, a request's headers, and quiet between requests each get this long.
const QUIET: Duration = Duration::from_secs(10);
/// A request, its body included, gets this long to be read and answered (a login's argon2
/// work and failure floor take at most a few seconds).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// After being told to go away at shutdown, a connection gets this long to finish.
const GRACE: Duration = Duration::from_secs(10);
/// A quiet connection told to go away has nothing in flight: it gets this long to close.
const QUIET_GRACE: Duration = Duration::from_secs(2);
/// How long open connections may take to finish their requests after shutdown.
const DRAIN: Duration = Duration::from_secs(8);
const PER_CLIENT: usize = 256;
const IN_ALL: usize = 4096;
/// Connections still in their TLS handshake, per client and in all: a silent connection costs
/// its opener nothing, so a few addresses must not be able to fill `IN_ALL` with them. Over
/// the per-client number a client's next connection is refused; over the total the oldest
/// handshake still waiting is dropped to make room (refusing instead would let a few hundred
/// silent connections shut everyone else out), so an honest handshake, which takes
/// milliseconds, always gets its turn.
const HANDSHAKING_PER_CLIENT: usize = 128;
const HANDSHAKING_IN_ALL: usize = 512;

/// Handshakes in progress, oldest first, each with the means to drop it.
#[derive(Default)]
struct Handshakes {
    waiting: Mutex<std::collections::VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>>,
    next: AtomicU64,
}

impl Handshakes {
    /// Registers a handshake (dropping the oldest one when `HANDSHAKING_IN_ALL` are waiting);
    /// returns its id and what tells it to give up.
    fn begin(&self) -> (u64, tokio::sync::oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The queue is whole after any panic (each change is one call): used as it is, the cap
        // holds; skipped, every handshake's sender was dropped, which reads as "give up".
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        while waiting.len() >= HANDSHAKING_IN_ALL {
            if let Some((_, oldest)) = waiting.pop_front() {
                let _ = oldest.send(());
            }
        }
        waiting.push_back((id, tx));
        (id, rx)
    }

    fn end(&self, id: u64) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(i, _)| *i != id);
    }
}

/// Binds a port: done before anything points at it (the webhook registered, the API server
/// configured), so that a port in use is an error at start rather than a caller nobody answers.
pub async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })
}

/// Connections open now, by client (an IPv4 address, or an IPv6 /64: one host holds a whole
/// /64, so counting its addresses one by one would count nothing).
struct Open {
    by_client: Mutex<HashMap<IpAddr, usize>>,
    all: AtomicUsize,
    per_client: usize,
    in_all: usize,
}

/// The client an address counts as.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// One open connection's place in `Open`; gives it back when dropped.
struct Slot {
    open: Arc<Open>,
    client: IpAddr,
}

impl Open {
    fn new(per_client: usize, in_all: usize) -> Arc<Open> {
        Arc::new(Open {
            by_client: Mutex::default(),
            all: AtomicUsize::new(0),
            per_client,
            in_all,
        })
    }

    fn take(self: &Arc<Open>, ip: IpAddr) -> Option<Slot> {
        let client = client_of(ip);
        let mut by_client = self.by_client.lock().ok()?;
        let mine = by_client.entry(client).or_insert(0);
        if *mine >= self.per_client || self.all.load(Ordering::SeqCst) >= self.in_all {
            return None;
        }
        *mine += 1;
        self.all.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            open: self.clone(),
            client,
        })
    }

    fn count(&self) -> usize {
        self.all.load(Ordering::SeqCst)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut by_client) = self.open.by_client.lock()
            && let Some(n) = by_client.get_mut(&self.client)
        {
            *n -= 1;
            if *n == 0 {
                by_client.remove(&self.client);
            }
        }
        self.open.all.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a connection is doing: requests in progress, and when one last started or ended.
struct Activity {
    since: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            since: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::SeqCst);
    }

    /// No request in progress, and none started or ended for `QUIET`.
    fn idle(&self) -> bool {
        let last = Duration::from_millis(self.last_ms.load(Ordering::SeqCst));
        self.in_flight.load(Ordering::SeqCst) == 0 && self.since.elapsed() > last + QUIET
    }
}

/// The router, tagging each request with its TCP peer and counting it in `Activity`.
#[derive(Clone)]
struct Tracked {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

type Response = http::Response<axum::body::Body>;

impl<B> tower::Service<http::Request<B>> for Tracked
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, std::result::Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(ClientAddr(self.peer));
        let activity = self.activity.clone();
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.touch();
        let router = self.router.clone();
        Box::pin(async move {
            // A request in progress keeps its connection from counting as quiet: one whose
            // body trickles in a byte at a time would hold its place forever without this.
            let response = match tokio::time::timeout(
                REQUEST_DEADLINE,
                tower::ServiceExt::oneshot(router, req.map(axum::body::Body::new)),
            )
            .await
            {
                Ok(response) => response,
                Err(_) => Ok(axum::response::IntoResponse::into_response((
                    http::StatusCode::REQUEST_TIMEOUT,
                    "the request took too long",
                ))),
            };
            activity.touch();
            activity.in_flight.fetch_sub(1, Ordering::SeqCst);
            response
        })
    }
}

/// Serves `router` over TLS with `config` (see `Certificates::server_config*`) until
/// `shutdown` resolves. Each request carries its TCP peer as a `ClientAddr` extension.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tracing::info!(addr = ?listener.local_addr().ok(), "listening");
    tokio::pin!(shutdown);
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Open::new(PER_CLIENT, IN_ALL);
    let handshaking = Open::new(HANDSHAKING_PER_CLIENT, usize::MAX);
    let handshakes = Arc::new(Handshakes::default());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, typically: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (Some(slot), Some(pending)) = (open.take(peer.ip()), handshaking.take(peer.ip()))
        else {
            tracing::debug!(%peer, "too many connections: closed");
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let stop = stop_rx.clone();
        let handshakes = handshakes.clone();
        let (id, dropped) = handshakes.begin();
        tokio::spawn(async move {
            let _slot = slot;
            let handshake = tokio::time::timeout(QUIET, acceptor.accept(tcp));
            let tls = tokio::select! {
                done = handshake => done,
                _ = dropped => {
                    return tracing::debug!(%peer, "handshake dropped to make room for newer ones");
                }
            };
            handshakes.end(id);
            drop(pending);
            let tls = match tls {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!("TLS handshake timed out"),
            };
            connection(tls, peer, router, stop).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + DRAIN;
    while open.count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if open.count() > 0 {
        tracing::warn!(
            open = open.count(),
            "connections still open {DRAIN:?} after shutdown; closing them"
        );
    }
    Ok(())
}

/// One connection: served until it ends, goes quiet, or shutdown asks it to go away.
async fn connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    let service = hyper_util::service::TowerToHyperService::new(Tracked {
        router,
        peer,
        activity: activity.clone(),
    });
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(QUIET);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(QUIET))
        .keep_alive_timeout(QUIET);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // When the connection was told to go away, and how long it then has.
    let mut leaving: Option<(Instant, Duration)> = None;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if leaving.is_none() => {
                conn.as_mut().graceful_shutdown();
                leaving = Some((Instant::now(), GRACE));
            }
            _ = tick.tick() => match leaving {
                Some((since, grace)) if since.elapsed() > grace => {
                    return tracing::debug!(%peer, "connection did not finish after going away: dropped");
                }
                Some(_) => {}
                None if activity.idle() => {
                    conn.as_mut().graceful_shutdown();
                    leaving = Some((Instant::now(), QUIET_GRACE));
                }
                None => {}
            },
        }
    }
}

/// The TCP peer of a request served by `serve` (the security log and rate limits use it).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Slow and idle clients, over both protocols the listener offers (the third red-team round
/// found HTTP/2 had no timeout at all; these failed then).
#[cfg(test)]
mod slow_clients {
    use super::*;
    use crate::tls::Certificates;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn server() -> (SocketAddr, String) {
        let certs = Certificates::generate(&["localhost".to_string()]).expect("certs");
        let ca = certs.ca_pem.clone();
        let config = certs.server_config().expect("config");
        let listener = listen("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("listen");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/echo",
                axum::routing::post(|body: String| async move { body }),
            );
        tokio::spawn(serve(listener, config, router, std::future::pending()));
        (addr, ca)
    }

    async fn connect(
        addr: SocketAddr,
        ca: &str,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        try_connect(addr, ca, alpn).await.expect("tls")
    }

    async fn try_connect(
        addr: SocketAddr,
        ca: &str,
        alpn: &[u8],
    ) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c.expect("pem")).expect("root");
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").expect("name"),
                tcp,
            )
            .await
            .ok()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_client_address_holds_at_most_256_connections() {
        let (addr, ca) = server().await;
        let mut held = Vec::new();
        for _ in 0..PER_CLIENT {
            held.push(connect(addr, &ca, b"h2").await);
        }
        assert!(
            try_connect(addr, &ca, b"h2").await.is_none(),
            "connection {} from one address is refused",
            PER_CLIENT + 1
        );
        held.truncate(PER_CLIENT - 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            try_connect(addr, &ca, b"h2").await.is_some(),
            "a closed connection gives its place back"
        );
    }

    /// Reads until the server closes; returns how long that took (None: still open at `limit`).
    async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
        s: &mut S,
        limit: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            let left = limit.checked_sub(start.elapsed())?;
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => continue,
            }
        }
    }

    #[tokio::test]
    async fn http1_headers_that_never_finish_are_cut_after_10s() {
        let (addr, ca) = server().await;
        let mut s = connect(addr, &ca, b"http/1.1").await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        let closed = closed_within(&mut s, Duration::from_secs(15)).await;
        assert!(closed.is_some(), "HTTP/1 connection still open after 15s");
    }

    #[tokio::test]
    async fn http2_headers_that_never_finish_are_cut_after_10s() {
        let (addr, ca) = server().await;
        let mut s = connect(addr, &ca, b"h2").await;
        assert_eq!(
            s.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "server chose h2"
        );
        // Client preface, empty SETTINGS, then HEADERS on stream 1 without END_HEADERS
        // (flags 0x1 = END_STREAM only): the server must wait for a CONTINUATION that never comes.
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 0, 1, 1, 0x1, 0, 0, 0, 1, 0x82]);
        s.write_all(&bytes).await.expect("write");
        let closed = closed_within(&mut s, Duration::from_secs(15)).await;
        assert!(
            closed.is_some(),
            "an HTTP/2 request whose headers never finish holds its connection (and task, buffers) past 15s: no header timeout for h2"
        );
    }

    #[tokio::test]
    async fn http2_connections_that_send_nothing_are_cut() {
        let (addr, ca) = server().await;
        let mut s = connect(addr, &ca, b"h2").await;
        // TLS done, not even the client preface.
        let closed = closed_within(&mut s, Duration::from_secs(15)).await;
        assert!(
            closed.is_some(),
            "an idle h2 connection is held open past 15s"
        );
    }

    /// Red-team round 4: silent TCP connections (no ClientHello) from 16 addresses used to take
    /// all 4096 places, and every other client was closed at once. Connections still in their
    /// handshake now count apart — 128 per client, and past 512 in all the oldest is dropped —
    /// so the same 4096 attempts leave a bystander served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_connections_from_a_few_addresses_lock_nobody_out() {
        let (addr, ca) = server().await;
        let connect_from = |ip: [u8; 4]| async move {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.bind(SocketAddr::from((ip, 0))).expect("bind");
            s.connect(addr).await.expect("connect")
        };
        let mut held = Vec::new();
        for a in 0..16u8 {
            for _ in 0..256 {
                held.push(connect_from([127, 0, 1, 1 + a]).await);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Over its 128 silent ones, an address's next connections are closed at once.
        for _ in 0..128 {
            held.push(connect_from([127, 0, 3, 1]).await);
        }
        let mut extra = connect_from([127, 0, 3, 1]).await;
        let mut b = [0u8; 16];
        let closed = matches!(
            tokio::time::timeout(Duration::from_secs(2), extra.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        );
        assert!(closed, "a 129th silent connection from one address is kept");
        // A bystander completes its handshake and is answered.
        let mut tls = connect(addr, &ca, b"http/1.1").await;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut answer = String::new();
        let _ = tls.read_to_string(&mut answer).await;
        assert!(answer.contains("200 OK"), "the bystander got: {answer:?}");
        drop(held);
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_of(a), client_of(b));
        assert_ne!(client_of(a), client_of(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(client_of(mapped), "10.1.2.3".parse::<IpAddr>().expect("ip"));
    }

    /// Red-team round 4 (second look): once through the handshake, a request whose body
    /// trickles in a byte every 2 s was in progress forever, so its connection never went
    /// quiet and kept its place. A request now gets 30 s in all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_whose_body_trickles_is_cut_after_30s() {
        let (addr, ca) = server().await;
        let mut tls = connect(addr, &ca, b"http/1.1").await;
        tls.write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n")
            .await
            .expect("headers");
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "the trickling request is still open after 40 s"
            );
            let _ = tls.write_all(b"x").await;
            match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            if String::from_utf8_lossy(&answer).contains("408") {
                break;
            }
        }
        assert!(
            started.elapsed() >= Duration::from_secs(29),
            "cut before its 30 s: {:?}",
            started.elapsed()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a panic while the queue of handshakes was held, a new handshake is still
    /// registered and the cap still drops the oldest: skipping the queue dropped each new
    /// handshake's sender, which the connection reads as "give up", so every TLS connection
    /// after such a panic was refused.
    #[test]
    fn handshakes_are_counted_after_a_panic_poisoned_the_queue() {
        let h = Arc::new(Handshakes::default());
        let held = h.clone();
        let _ = std::thread::spawn(move || {
            let _queue = held.waiting.lock();
            panic!("poisoning the queue on purpose");
        })
        .join();
        let (_, mut first) = h.begin();
        assert!(
            first
                .try_recv()
                .is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Empty),
            "a new handshake is told to give up"
        );
        for _ in 1..HANDSHAKING_IN_ALL {
            let _ = h.begin();
        }
        assert!(first.try_recv().is_err(), "not dropped below the cap");
        let (newest, _) = h.begin();
        assert_eq!(first.try_recv(), Ok(()), "the oldest is dropped at the cap");
        h.end(newest);
        assert_eq!(
            h.waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            HANDSHAKING_IN_ALL - 1
        );
    }
}
