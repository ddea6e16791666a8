//! Listeners and connections: one accept thread per listener, one thread per connection.
//! Connections are HTTP/1.1 persistent, as the web server in front of an engine keeps them:
//! several requests each (`keep_alive_requests`), closed when idle for `keep_alive_idle`, when
//! the client says `Connection: close`, or after every answer with `close_each`. Plain std
//! threads keep the simulator free of an async runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustls::ServerConnection;

use crate::config::SimConfig;
use crate::enroll::{Enroller, Enrollments, Settings};
use crate::events::{lock, Event, EventKind, EventLog};
use crate::faults::Faults;
use crate::hosts::Hosts;
use crate::http::{self, Response};
use crate::port_hold::PortHold;
use crate::rate_limit::{self, Limit, RateLimiter};
use crate::router;
use crate::servlet::Engine;
use crate::tls::Pki;
use crate::tokens::Tokens;

/// How often an idle accept loop looks at the stop flag and the refuse switch.
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// State shared by all threads of one simulator.
pub struct Shared {
    pub config: SimConfig,
    pub pki: Pki,
    pub hosts: Hosts,
    pub faults: Faults,
    pub events: EventLog,
    pub enrollments: Enrollments,
    pub tokens: Tokens,
    /// Node upgrades offered to hosts.
    pub upgrades: crate::upgrades::Upgrades,
    pub settings: Mutex<Settings>,
    /// The rate limit and the per-second measurement of engine requests.
    pub limiter: RateLimiter,
    pub https_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    stop: AtomicBool,
    connections: AtomicUsize,
    /// Connections that got as far as serving (TLS: handshake done); numbers them.
    served: AtomicU64,
    /// TLS connections whose handshake completed.
    tls_connections: AtomicU64,
}

impl Shared {
    pub fn engine(&self) -> Engine<'_> {
        Engine {
            pki: &self.pki,
            hosts: &self.hosts,
            events: &self.events,
            version: self.config.protocol_version,
            enroll: self.enroller(),
        }
    }

    pub fn enroller(&self) -> Enroller<'_> {
        Enroller {
            pki: &self.pki,
            hosts: &self.hosts,
            enrollments: &self.enrollments,
            tokens: &self.tokens,
            events: &self.events,
            settings: lock(&self.settings).clone(),
            organization: &self.config.organization,
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// TLS connections accepted so far whose handshake completed (port probes and refused
    /// certificates are not counted).
    pub fn tls_connections(&self) -> u64 {
        self.tls_connections.load(Ordering::Relaxed)
    }

    /// The number of a connection that starts serving: 1, 2, … over both listeners.
    fn next_connection(&self) -> u64 {
        self.served.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sleeps, but wakes early when the simulator stops (stall faults must not delay stop).
    pub fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stopping() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

/// Binds the listeners and starts the accept threads.
pub fn start(config: SimConfig) -> Result<(Arc<Shared>, Vec<JoinHandle<()>>)> {
    let pki = Pki::new(
        config.state_dir.as_deref(),
        &config.fqdn,
        &config.server_names(),
        config.engine_key,
    )?;
    let https = bind(config.listen)?;
    let http = config.http_listen.map(bind).transpose()?;
    let faults = Faults::default();
    for f in &config.faults {
        faults.add(f.clone());
    }
    let shared = Arc::new(Shared {
        pki,
        hosts: Hosts::new(config.auto_approve.clone()),
        faults,
        events: EventLog::new(config.event_log.as_deref())?,
        enrollments: Enrollments::default(),
        upgrades: Default::default(),
        tokens: Tokens::default(),
        settings: Mutex::new(Settings {
            cert_lifetime_secs: config.cert_lifetime.as_secs(),
            retry_after_secs: config.retry_after_secs,
        }),
        limiter: RateLimiter::new(Limit {
            rate_limit: config.rate_limit,
            rate_limit_retry_after_secs: config.rate_limit_retry_after,
        }),
        https_addr: https.local_addr()?,
        http_addr: http.as_ref().map(TcpListener::local_addr).transpose()?,
        config,
        stop: AtomicBool::new(false),
        connections: AtomicUsize::new(0),
        served: AtomicU64::new(0),
        tls_connections: AtomicU64::new(0),
    });
    let mut threads = vec![spawn_accept(&shared, https, Scheme::Https)?];
    if let Some(l) = http {
        threads.push(spawn_accept(&shared, l, Scheme::Http)?);
    }
    Ok((shared, threads))
}

pub fn stop(shared: &Shared, threads: &mut Vec<JoinHandle<()>>) {
    if !shared.stop.swap(true, Ordering::Relaxed) {
        // The run's figures, once, for whoever reads the event log afterwards.
        let summary = rate_limit::summary(&shared.limiter.stats());
        shared
            .events
            .push(Event::new(EventKind::Rate).detail(summary));
    }
    for t in threads.drain(..) {
        let _ = t.join();
    }
}

/// Nonblocking, so the accept loop can poll the stop flag and drop the socket for the
/// refuse fault.
fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let l = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn spawn_accept(
    shared: &Arc<Shared>,
    listener: TcpListener,
    scheme: Scheme,
) -> Result<JoinHandle<()>> {
    let shared = Arc::clone(shared);
    let addr = listener.local_addr()?;
    let url = format!("{}://{addr}", scheme.as_str());
    shared
        .events
        .push(Event::new(EventKind::Listening).detail(url));
    Ok(thread::Builder::new()
        .name(format!("sim-accept-{}", scheme.as_str()))
        .spawn(move || accept_loop(&shared, listener, addr, scheme))?)
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener, addr: SocketAddr, scheme: Scheme) {
    let mut listener = Some(listener);
    // While refusing, the port stays reserved so the listener can always come back.
    let mut hold = None;
    while !shared.stopping() {
        if shared.faults.refusing() {
            // No socket listening at all: clients get a real ECONNREFUSED, as with an engine
            // down.
            if listener.take().is_some() {
                hold = PortHold::bind(addr).ok();
                note_fault(
                    shared,
                    format!("{} listener closed (refuse)", scheme.as_str()),
                );
            }
            thread::sleep(POLL);
            continue;
        }
        let Some(l) = listener.as_ref() else {
            listener = bind(addr).ok();
            match listener {
                Some(_) => {
                    drop(hold.take());
                    note_fault(shared, format!("{} listener reopened", scheme.as_str()))
                }
                None => thread::sleep(POLL),
            }
            continue;
        };
        match l.accept() {
            Ok((stream, peer)) => spawn_connection(shared, stream, peer, scheme),
            Err(_) => thread::sleep(POLL),
        }
    }
}

fn note_fault(shared: &Shared, detail: String) {
    shared
        .events
        .push(Event::new(EventKind::Fault).detail(detail));
}

/// Decrements the connection count however the connection thread ends.
struct ConnGuard(Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr, scheme: Scheme) {
    let n = shared.connections.fetch_add(1, Ordering::Relaxed);
    let guard = ConnGuard(Arc::clone(shared));
    if n >= shared.config.max_connections {
        let detail = format!("over {} connections, closed", shared.config.max_connections);
        shared
            .events
            .push(remote_event(EventKind::BadRequest, peer, scheme).detail(detail));
        return;
    }
    let spawned = thread::Builder::new()
        .name("sim-conn".into())
        .spawn(move || {
            let guard = guard;
            handle_connection(&guard.0, stream, peer, scheme);
        });
    if spawned.is_err() {
        // The guard moved into the failed closure was dropped with it.
        shared
            .events
            .push(remote_event(EventKind::BadRequest, peer, scheme).detail("no thread"));
    }
}

fn handle_connection(shared: &Shared, mut tcp: TcpStream, peer: SocketAddr, scheme: Scheme) {
    let timeout = Some(shared.config.io_timeout);
    // Linux does not pass O_NONBLOCK on to accepted sockets, but other systems do.
    if tcp.set_nonblocking(false).is_err()
        || tcp.set_read_timeout(timeout).is_err()
        || tcp.set_write_timeout(timeout).is_err()
    {
        return;
    }
    let _ = tcp.set_nodelay(true);
    match scheme {
        Scheme::Http => {
            let id = shared.next_connection();
            serve(shared, &mut tcp, peer, scheme, None, id)
        }
        Scheme::Https => serve_tls(shared, &mut tcp, peer),
    }
    linger_close(tcp);
}

fn serve_tls(shared: &Shared, tcp: &mut TcpStream, peer: SocketAddr) {
    let hello = match read_client_hello(tcp) {
        Ok(Some(h)) => h,
        Ok(None) => return, // closed before a ClientHello: a port probe
        Err(e) => return tls_error(shared, peer, e, None),
    };
    // Chosen only now, so a bare TCP probe (a harness waiting for the port) does not use up
    // a wrong-CA count.
    let wrong_ca = shared.faults.take_wrong_ca();
    let fault = wrong_ca.then(|| "wrong_ca".to_string());
    let config = if wrong_ca {
        &shared.pki.other_server
    } else {
        &shared.pki.server
    };
    let mut conn = match finish_handshake(tcp, hello, config) {
        Ok(c) => c,
        Err(e) => return tls_error(shared, peer, e, fault),
    };
    shared.tls_connections.fetch_add(1, Ordering::Relaxed);
    let id = shared.next_connection();
    let mut stream = rustls::Stream::new(&mut conn, tcp);
    serve(shared, &mut stream, peer, Scheme::Https, fault, id);
    conn.send_close_notify();
    let _ = conn.complete_io(tcp);
}

fn tls_error(shared: &Shared, peer: SocketAddr, e: std::io::Error, fault: Option<String>) {
    let mut ev = remote_event(EventKind::TlsError, peer, Scheme::Https).detail(e.to_string());
    ev.fault = fault;
    shared.events.push(ev);
}

/// Reads until a complete ClientHello is in (bounded in rounds; each read by the timeout).
/// `None`: the peer closed before sending one.
fn read_client_hello(tcp: &mut TcpStream) -> std::io::Result<Option<rustls::server::Accepted>> {
    let mut acceptor = rustls::server::Acceptor::default();
    for _ in 0..64 {
        if acceptor.read_tls(tcp)? == 0 {
            return Ok(None);
        }
        match acceptor.accept() {
            Ok(Some(hello)) => return Ok(Some(hello)),
            Ok(None) => {}
            Err((e, mut alert)) => return Err(tls_failure(tcp, e, &mut alert)),
        }
    }
    Err(std::io::Error::other("no ClientHello after 64 reads"))
}

/// complete_io drives the rest of the handshake; each read is bounded by the socket timeout.
fn finish_handshake(
    tcp: &mut TcpStream,
    hello: rustls::server::Accepted,
    config: &Arc<rustls::ServerConfig>,
) -> std::io::Result<ServerConnection> {
    let mut conn = hello
        .into_connection(Arc::clone(config))
        .map_err(|(e, mut alert)| tls_failure(tcp, e, &mut alert))?;
    conn.complete_io(tcp)?;
    if conn.is_handshaking() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(conn)
}

/// Sends the alert rustls prepared (so the client learns why) and turns the error into io.
fn tls_failure(
    tcp: &mut TcpStream,
    e: rustls::Error,
    alert: &mut rustls::server::AcceptedAlert,
) -> std::io::Error {
    let _ = alert.write_all(tcp);
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// A connection's byte stream and the socket under it (whose read timeout changes between
/// requests).
trait Conn: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for rustls::Stream<'_, ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.sock
    }
}

/// Serves the requests of connection number `id` one after the other, each answered and
/// logged with `id`, until the connection is to close. Each event is logged *before* its
/// answer is written, so a client that has its answer can rely on finding the event.
fn serve(
    shared: &Shared,
    stream: &mut impl Conn,
    peer: SocketAddr,
    scheme: Scheme,
    conn_fault: Option<String>,
    id: u64,
) {
    let cfg = &shared.config;
    let most = if cfg.close_each {
        1
    } else {
        cfg.keep_alive_requests.max(1)
    };
    for n in 1..=most {
        // Waiting for a later request is bounded by the idle timeout, not the I/O one.
        let later = n > 1;
        if later && set_read_timeout(stream, cfg.keep_alive_idle).is_err() {
            return;
        }
        let read = http::read_request(stream);
        if later && set_read_timeout(stream, cfg.io_timeout).is_err() {
            return;
        }
        let req = match read {
            Ok(r) => r,
            // A kept-alive connection the client closed or left idle ends quietly.
            Err(http::ReadError::Closed | http::ReadError::Idle(_)) if later => return,
            Err(e) => return bad_request(shared, stream, peer, scheme, e),
        };
        if later && (shared.faults.refusing() || shared.stopping()) {
            // An engine that is down does not answer on old connections either.
            let what = format!("{} connection {id} closed (refuse)", scheme.as_str());
            return note_fault(shared, what);
        }
        let close = n == most || !req.keeps_alive();
        let (resp, fault) = router::route(shared, &req, peer);
        let mut ev = remote_event(EventKind::Request, peer, scheme);
        ev.method = Some(req.method.clone());
        ev.path = Some(req.path.clone());
        ev.raw_query = Some(req.raw_query.clone());
        ev.query = req.query.clone();
        ev.status = Some(resp.status);
        ev.fault = fault.or_else(|| conn_fault.clone());
        ev.connection = Some(id);
        shared.events.push(ev);
        let written = http::write_response(stream, &resp, req.method == "HEAD", close);
        if close || written.is_err() {
            return;
        }
    }
}

fn set_read_timeout(stream: &impl Conn, d: Duration) -> std::io::Result<()> {
    stream.tcp().set_read_timeout(Some(d))
}

fn bad_request(
    shared: &Shared,
    stream: &mut impl Write,
    peer: SocketAddr,
    scheme: Scheme,
    e: http::ReadError,
) {
    if matches!(e, http::ReadError::Closed) {
        return; // port probes (the harness waiting for us) are not worth an event
    }
    let mut ev = remote_event(EventKind::BadRequest, peer, scheme).detail(e.to_string());
    ev.status = e.status();
    shared.events.push(ev);
    if let Some(status) = e.status() {
        let answer = Response::error(status, &e.to_string());
        let _ = http::write_response(stream, &answer, false, true);
    }
}

fn remote_event(kind: EventKind, peer: SocketAddr, scheme: Scheme) -> Event {
    let mut ev = Event::new(kind);
    ev.remote = Some(peer.to_string());
    ev.scheme = Some(scheme.as_str().into());
    ev
}

/// Closing a socket with unread input makes Linux send RST, which can destroy the answer we
/// just wrote (e.g. a 431 to a client still sending its huge head). Half-close and drain a
/// little first.
fn linger_close(tcp: TcpStream) {
    let _ = tcp.shutdown(Shutdown::Write);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut t = &tcp;
    for _ in 0..16 {
        match t.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}
