//! A fault-injecting TCP proxy on 127.0.0.1, put in front of a node's federation listener.
//!
//! It forwards bytes both ways and counts them per direction (for benchmarks: what
//! anti-entropy costs on the wire). Faults:
//! - [`Proxy::partition`]: every open connection is reset and new ones are accepted then
//!   closed at once, as a cut link with a firewall answering RST would;
//! - [`Proxy::blackhole`]: nothing is forwarded any more, in either direction, on open or new
//!   connections, but nothing is closed either, as when packets are silently dropped; the
//!   connections resume where they stood on [`Proxy::heal`];
//! - [`Proxy::set_rate_limit`]: each direction of each connection is throttled, so that a
//!   transfer lasts long enough to be interrupted on purpose.
//!
//! Plain std threads: a few per connection, which the federation keeps few and long-lived.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Bytes flow.
    Open,
    /// Connections are reset; new ones are accepted and closed at once.
    Partitioned,
    /// Nothing flows, nothing is closed.
    Blackholed,
}

/// Bytes the proxy forwarded, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteCounts {
    /// From the connecting side (the client) to the target.
    pub to_target: u64,
    /// From the target back to the client.
    pub to_client: u64,
}

impl ByteCounts {
    pub fn total(&self) -> u64 {
        self.to_target + self.to_client
    }
}

struct Shared {
    target: SocketAddr,
    state: Mutex<LinkState>,
    changed: Condvar,
    stopping: AtomicBool,
    to_target: AtomicU64,
    to_client: AtomicU64,
    connections_accepted: AtomicU64,
    /// Bytes per second per direction and connection; 0: unlimited.
    rate_limit: AtomicU64,
    /// Open connections: (client side, target side), to reset them on a partition.
    open: Mutex<HashMap<u64, (TcpStream, Option<TcpStream>)>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> MutexGuard<'_, HashMap<u64, (TcpStream, Option<TcpStream>)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits while the link is blackholed; true if bytes may flow, false if the connection
    /// must end (partition or proxy stopping).
    fn may_flow(&self) -> bool {
        let mut s = self.state();
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return false;
            }
            match *s {
                LinkState::Open => return true,
                LinkState::Partitioned => return false,
                LinkState::Blackholed => {
                    s = self
                        .changed
                        .wait_timeout(s, Duration::from_millis(200))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    fn reset_all(&self) {
        for (_, (client, target)) in self.open().drain() {
            let _ = client.shutdown(Shutdown::Both);
            if let Some(t) = target {
                let _ = t.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A TCP proxy from a local port to `target`. Stops (and resets its connections) on drop.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .field("state", &self.state())
            .field("counts", &self.counts())
            .finish()
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(LinkState::Open),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            to_target: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            rate_limit: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy {addr}"))
            .spawn(move || accept_loop(listener, s))?;
        Ok(Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    pub fn state(&self) -> LinkState {
        *self.shared.state()
    }

    fn set_state(&self, new: LinkState) {
        *self.shared.state() = new;
        self.shared.changed.notify_all();
    }

    /// Cuts the link: every open connection is reset, new ones are accepted and closed.
    pub fn partition(&self) {
        self.set_state(LinkState::Partitioned);
        self.shared.reset_all();
    }

    /// Silently drops traffic: nothing is forwarded, nothing is closed, until [`Self::heal`].
    pub fn blackhole(&self) {
        self.set_state(LinkState::Blackholed);
    }

    /// Lets bytes flow again (connections held by a blackhole resume).
    pub fn heal(&self) {
        self.set_state(LinkState::Open);
    }

    /// Throttles each direction of each connection to `bytes_per_sec` (0: unlimited).
    pub fn set_rate_limit(&self, bytes_per_sec: u64) {
        self.shared
            .rate_limit
            .store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Bytes forwarded so far. A byte is counted when it is handed to the other side.
    pub fn counts(&self) -> ByteCounts {
        ByteCounts {
            to_target: self.shared.to_target.load(Ordering::SeqCst),
            to_client: self.shared.to_client.load(Ordering::SeqCst),
        }
    }

    /// Zeroes the byte counters (e.g. before measuring one anti-entropy round).
    pub fn reset_counts(&self) {
        self.shared.to_target.store(0, Ordering::SeqCst);
        self.shared.to_client.store(0, Ordering::SeqCst);
    }

    /// TCP connections accepted so far (including those a partition closed at once).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted.load(Ordering::SeqCst)
    }

    /// Connections being forwarded now.
    pub fn open_connections(&self) -> usize {
        self.shared.open().len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        self.shared.reset_all();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        shared.connections_accepted.fetch_add(1, Ordering::SeqCst);
        if *shared.state() == LinkState::Partitioned {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        next_id += 1;
        let id = next_id;
        let s = shared.clone();
        let _ = std::thread::Builder::new()
            .name(format!("proxy conn {id}"))
            .spawn(move || connection(id, client, s));
    }
}

/// One proxied connection: connects to the target once bytes may flow, then pumps both
/// ways (the client-to-target direction on this thread).
fn connection(id: u64, client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let Ok(client_clone) = client.try_clone() else {
        return;
    };
    shared.open().insert(id, (client_clone, None));
    // A blackholed link does not even let the connection reach the target.
    if !shared.may_flow() {
        end(id, &client, None, &shared);
        return;
    }
    let target = match TcpStream::connect_timeout(&shared.target, Duration::from_secs(5)) {
        Ok(t) => t,
        Err(_) => {
            end(id, &client, None, &shared);
            return;
        }
    };
    let _ = target.set_nodelay(true);
    {
        let mut open = shared.open();
        match (open.get_mut(&id), target.try_clone()) {
            (Some(entry), Ok(t)) => entry.1 = Some(t),
            // Reset by a partition while connecting.
            _ => {
                drop(open);
                end(id, &client, Some(&target), &shared);
                return;
            }
        }
    }
    let (Ok(c2), Ok(t2)) = (client.try_clone(), target.try_clone()) else {
        end(id, &client, Some(&target), &shared);
        return;
    };
    let s = shared.clone();
    let back = std::thread::Builder::new()
        .name(format!("proxy conn {id} back"))
        .spawn(move || pump(t2, c2, &s, false));
    pump(
        client.try_clone().expect("clone client stream"),
        target.try_clone().expect("clone target stream"),
        &shared,
        true,
    );
    if let Ok(b) = back {
        let _ = b.join();
    }
    end(id, &client, Some(&target), &shared);
}

fn end(id: u64, client: &TcpStream, target: Option<&TcpStream>, shared: &Shared) {
    shared.open().remove(&id);
    let _ = client.shutdown(Shutdown::Both);
    if let Some(t) = target {
        let _ = t.shutdown(Shutdown::Both);
    }
}

/// Copies `from` to `to` until EOF, an error, a partition or the proxy stops.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, to_target: bool) {
    let counter = if to_target {
        &shared.to_target
    } else {
        &shared.to_client
    };
    let mut buf = vec![0u8; 16 * 1024];
    // When the bytes forwarded so far are due, at the rate limit (no burst after idling).
    let mut due = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                // Half-close: the other side sees EOF once everything before it arrived.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if !shared.may_flow() {
            break;
        }
        let limit = shared.rate_limit.load(Ordering::SeqCst);
        if limit > 0 {
            // Throttling, not synchronisation: keep this direction under `limit` bytes/s.
            let now = Instant::now();
            due = due.max(now) + Duration::from_secs_f64(n as f64 / limit as f64);
            std::thread::sleep(due - now);
        }
        counter.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server: returns every byte it receives, and counts them.
    struct Echo {
        addr: SocketAddr,
        received: Arc<AtomicU64>,
    }

    fn echo() -> Echo {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let r = received.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut out = c.try_clone().unwrap();
                    let mut buf = [0u8; 4096];
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                r.fetch_add(n as u64, Ordering::SeqCst);
                                if out.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo { addr, received }
    }

    fn connect(p: &Proxy) -> TcpStream {
        let c = TcpStream::connect(p.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }

    /// Sends `data` and reads the echo back.
    fn exchange(c: &mut TcpStream, data: &[u8]) -> Vec<u8> {
        c.write_all(data).unwrap();
        let mut back = vec![0u8; data.len()];
        c.read_exact(&mut back).unwrap();
        back
    }

    /// True if the connection is closed or reset (reads EOF or an error, not a timeout).
    fn is_closed(c: &mut TcpStream) -> bool {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }

    fn wait(what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn counts_are_exact_for_an_echo_exchange() {
        let e = echo();
        let p = Proxy::start(e.addr).unwrap();
        let mut c = connect(&p);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(exchange(&mut c, &data), data);
        assert_eq!(exchange(&mut c, b"ping"), b"ping");
        assert_eq!(
            p.counts(),
            ByteCounts {
                to_target: 100_004,
                to_client: 100_004
            }
        );
        assert_eq!(p.counts().total(), 200_008);
        assert_eq!(e.received.load(Ordering::SeqCst), 100_004);
        assert_eq!(p.connections_accepted(), 1);
        assert_eq!(p.open_connections(), 1);
        p.reset_counts();
        assert_eq!(exchange(&mut c, b"abc"), b"abc");
        assert_eq!(
            p.counts(),
            ByteCounts {
                to_target: 3,
                to_client: 3
            }
        );
        // A client that closes ends the connection at the proxy too.
        drop(c);
        wait("the connection to end", || p.open_connections() == 0);
    }

    #[test]
    fn a_partitioned_proxy_passes_no_bytes_and_heals() {
        let e = echo();
        let p = Proxy::start(e.addr).unwrap();
        let mut before = connect(&p);
        assert_eq!(exchange(&mut before, b"hello"), b"hello");
        let counts = p.counts();

        p.partition();
        assert_eq!(p.state(), LinkState::Partitioned);
        // The open connection is reset.
        assert!(
            is_closed(&mut before),
            "open connection survived a partition"
        );
        let _ = before.write_all(b"lost");
        // New connections are accepted, then closed without reaching the target.
        for _ in 0..3 {
            let mut c = connect(&p);
            let _ = c.write_all(b"lost too");
            assert!(is_closed(&mut c), "a new connection passed a partition");
        }
        assert_eq!(p.counts(), counts, "bytes passed a partition");
        assert_eq!(e.received.load(Ordering::SeqCst), 5);
        assert_eq!(p.open_connections(), 0);

        p.heal();
        assert_eq!(p.state(), LinkState::Open);
        let mut after = connect(&p);
        assert_eq!(exchange(&mut after, b"again"), b"again");
        assert_eq!(
            p.counts(),
            ByteCounts {
                to_target: 10,
                to_client: 10
            }
        );
        assert_eq!(e.received.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn a_blackhole_holds_bytes_and_heal_delivers_them() {
        let e = echo();
        let p = Proxy::start(e.addr).unwrap();
        let mut open = connect(&p);
        assert_eq!(exchange(&mut open, b"one"), b"one");

        p.blackhole();
        open.write_all(b"held").unwrap();
        let mut fresh = connect(&p);
        fresh.write_all(b"new").unwrap();
        // Nothing comes back and nothing is closed: both reads time out.
        for c in [&mut open, &mut fresh] {
            c.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut b = [0u8; 1];
            let r = c.read(&mut b);
            assert!(
                matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
                "a blackholed connection answered: {r:?}"
            );
        }
        assert_eq!(e.received.load(Ordering::SeqCst), 3);
        assert_eq!(p.counts().to_target, 3);

        p.heal();
        for (c, want) in [(&mut open, &b"held"[..]), (&mut fresh, &b"new"[..])] {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut back = vec![0u8; want.len()];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, want);
        }
        assert_eq!(e.received.load(Ordering::SeqCst), 10);
        assert_eq!(
            p.counts(),
            ByteCounts {
                to_target: 10,
                to_client: 10
            }
        );
    }

    #[test]
    fn the_rate_limit_slows_a_transfer() {
        let e = echo();
        let p = Proxy::start(e.addr).unwrap();
        p.set_rate_limit(256 * 1024);
        let mut c = connect(&p);
        let data = vec![7u8; 128 * 1024];
        let start = Instant::now();
        assert_eq!(exchange(&mut c, &data), data);
        // 128 KiB at 256 KiB/s takes about half a second each way (the two overlap).
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
        p.set_rate_limit(0);
        assert_eq!(exchange(&mut c, b"fast"), b"fast");
    }

    #[test]
    fn a_dropped_proxy_closes_its_connections() {
        let e = echo();
        let p = Proxy::start(e.addr).unwrap();
        let mut c = connect(&p);
        assert_eq!(exchange(&mut c, b"x"), b"x");
        let addr = p.addr();
        drop(p);
        assert!(is_closed(&mut c));
        assert!(TcpStream::connect(addr).is_err(), "still listening");
    }
}
