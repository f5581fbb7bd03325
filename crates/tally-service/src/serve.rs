//! Running an `axum::Router` (the collector's app, or a DAP aggregator's) on a TCP listener,
//! with every resource bounded.
//!
//! - at most `max_connections` connections are open at once; a client that connects while all
//!   of them are taken waits in the kernel's backlog (the accept loop holds at most one accepted
//!   connection back), unless a connection is stalled: then the one stalled longest is closed
//!   to make room (see "Shedding" below);
//! - a client must send a request's headers within `header_timeout` (hyper's header read
//!   timeout, which also closes idle keep-alive connections), and its body within the app's
//!   body timeout (the collector's upload handler has its own; [`with_body_deadline`] gives one
//!   to every route of a router): a client that trickles bytes is cut off;
//! - a response must be written out within `write_timeout` of the socket first refusing more
//!   bytes: a client that sends requests and never reads the answers (pipelining into a full
//!   socket) is cut off, and so is one that reads too slowly to take a response in that time;
//! - a connection that moves no byte either way for `stall_timeout` while none of its requests
//!   is being handled is closed, whatever hyper is waiting for;
//! - the peer address returned by `accept` is dropped on the spot: nothing can log it.
//!
//! Shedding: timeouts alone free a slot only after seconds, and a client that reconnects
//! as fast as it is cut off could keep every slot, so that a health probe waits behind it
//! indefinitely. So when every slot is taken and another client is waiting, the accept loop
//! closes the connection that has been stalled longest: one whose response write is blocked,
//! or one with no request being handled, that has moved no byte for at least [`SHED_AFTER`].
//! A connection whose request is being handled and whose output flows is never shed. A new
//! client therefore waits at most about [`SHED_AFTER`] per stalled connection ahead of it in
//! the backlog, divided by the number of slots.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// How long a connection must have been stalled before it may be closed to make room for a
/// waiting client. Long enough that a client between two requests of a busy exchange is not
/// cut off, short enough that a probe behind a few hundred stalled clients gets in within
/// seconds.
pub const SHED_AFTER: Duration = Duration::from_millis(250);

/// How often the accept loop looks again for a connection to shed while every slot is taken.
const SHED_POLL: Duration = Duration::from_millis(50);

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Longest a response may take to be written out once the socket has refused bytes.
    pub write_timeout: Duration,
    /// Longest a connection may move no byte while none of its requests is being handled.
    pub stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
        }
    }
}

/// The command-line flags of every role's listener (`tally-server serve`, `tally-server dap
/// leader|helper`): one definition, so that they read alike everywhere.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Most connections open at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send request headers (also the keep-alive idle limit).
    #[arg(long, default_value_t = 5.0)]
    pub header_timeout: f64,
    /// Seconds a client has to send an upload's body.
    #[arg(long, default_value_t = 10.0)]
    pub body_timeout: f64,
    /// Seconds a response may take to be written out once the client's socket stops taking
    /// bytes (a client that never reads its answers is cut off after this).
    #[arg(long, default_value_t = 10.0)]
    pub write_timeout: f64,
    /// Seconds a connection may go without a byte read or written while none of its requests
    /// is being handled.
    #[arg(long, default_value_t = 10.0)]
    pub stall_timeout: f64,
}

impl LimitArgs {
    /// The connection limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            header_timeout: seconds(self.header_timeout),
            write_timeout: seconds(self.write_timeout),
            stall_timeout: seconds(self.stall_timeout),
        }
    }

    /// The body timeout.
    pub fn body_timeout(&self) -> Duration {
        seconds(self.body_timeout)
    }
}

/// A timeout given in seconds on the command line; at least a millisecond, and a value that is
/// not a finite number of seconds (NaN, infinite, beyond `Duration`) is a day.
pub fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.001)).unwrap_or(Duration::from_secs(86_400))
}

/// Reads every request's body whole before `router`'s handler runs: within `timeout` of the
/// handler being called (else 408, and the connection is closed), and at most `max_bytes`
/// (else 413). Handlers then take the body as `Bytes` and never wait on the client; a route's
/// own `DefaultBodyLimit` still applies below this one.
pub fn with_body_deadline(router: Router, timeout: Duration, max_bytes: usize) -> Router {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    router.layer(axum::middleware::from_fn(
        move |request: Request<Body>, next: axum::middleware::Next| async move {
            let (parts, body) = request.into_parts();
            let declared = parts
                .headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max_bytes as u64) {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is over the {max_bytes} byte limit\n"),
                )
                    .into_response();
            }
            match tokio::time::timeout(timeout, axum::body::to_bytes(body, max_bytes)).await {
                Err(_) => {
                    let mut response = (
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request body did not arrive within {} seconds\n",
                            timeout.as_secs_f64()
                        ),
                    )
                        .into_response();
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                    response
                }
                Ok(Err(_)) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body was cut off or is over the {max_bytes} byte limit\n"),
                )
                    .into_response(),
                Ok(Ok(bytes)) => {
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
            }
        },
    ))
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: a signal arriving before the accept loop first runs must stop
/// the server as any other, not kill it outright.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot handle SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("cannot handle SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Serves `app` on `listener` until `shutdown` completes, then waits up to `drain` for open
/// connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let open = Arc::new(Registry::default());
    let clock = Clock(Instant::now());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let mut next_id = 0u64;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                // The peer address is deliberately discarded.
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    eprintln!("tally-server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                match make_room(&slots, &open, clock, shutdown.as_mut()).await {
                    Some(slot) => slot,
                    None => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let conn = Arc::new(Conn::new(next_id, clock));
        open.insert(conn.clone());
        let service = {
            let (app, conn) = (app.clone(), conn.clone());
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let busy = Busy::enter(conn.clone());
                let app = app.clone();
                async move {
                    let response: Result<Response<Body>, _> =
                        tower::ServiceExt::oneshot(app, request).await;
                    drop(busy);
                    response
                }
            })
        };
        let io = TokioIo::new(Tracked {
            stream,
            conn: conn.clone(),
        });
        let connection = http.serve_connection(io, service);
        let open = open.clone();
        tokio::spawn(async move {
            tokio::select! {
                // Errors here are a client's problem (reset, timeout); they carry nothing to log.
                _ = connection => {}
                () = watch(&conn, limits) => {}
            }
            open.remove(conn.id);
            drop(slot);
        });
    }
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(drain, slots.acquire_many(all)).await;
}

/// Waits for a free slot while a client is waiting for one, closing the connection stalled
/// longest (one at a time) to make it. `None` when the server is shutting down.
async fn make_room(
    slots: &Arc<Semaphore>,
    open: &Registry,
    clock: Clock,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<OwnedSemaphorePermit> {
    loop {
        open.shed_one(clock.now_ms(), SHED_AFTER.as_millis() as u64);
        tokio::select! {
            slot = slots.clone().acquire_owned() => return slot.ok(),
            () = tokio::time::sleep(SHED_POLL) => {}
            () = &mut shutdown => return None,
        }
    }
}

/// Returns when the connection must be closed: its response write has been blocked for
/// `write_timeout`, it has moved no byte for `stall_timeout` with no request being handled, or
/// the accept loop shed it.
async fn watch(conn: &Conn, limits: Limits) {
    let write_ms = limits.write_timeout.as_millis() as u64;
    let stall_ms = limits.stall_timeout.as_millis() as u64;
    let tick = (limits.write_timeout.min(limits.stall_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = conn.shed.notified() => return,
        }
        let now = conn.clock.now_ms();
        let blocked = conn.blocked_since.load(Ordering::Acquire);
        if blocked != 0 && now.saturating_sub(blocked) >= write_ms {
            return;
        }
        let idle = now.saturating_sub(conn.last_progress.load(Ordering::Acquire));
        if conn.busy.load(Ordering::Acquire) == 0 && idle >= stall_ms {
            return;
        }
    }
}

/// Milliseconds since the server started, plus one, so that 0 can mean "never".
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ms(self) -> u64 {
        self.0.elapsed().as_millis() as u64 + 1
    }
}

/// What the server knows about one open connection's progress. Written by its socket wrapper
/// and its service, read by its watchdog and by the accept loop when shedding.
struct Conn {
    id: u64,
    clock: Clock,
    /// When a byte was last read or written, or a request finished being handled.
    last_progress: AtomicU64,
    /// When the socket first refused bytes of output that is still not all written; 0 when
    /// all output so far has been written out.
    blocked_since: AtomicU64,
    /// Requests of this connection being handled now.
    busy: AtomicUsize,
    /// Set once the accept loop has chosen to shed this connection.
    shedding: AtomicBool,
    shed: Notify,
}

impl Conn {
    fn new(id: u64, clock: Clock) -> Conn {
        Conn {
            id,
            clock,
            last_progress: AtomicU64::new(clock.now_ms()),
            blocked_since: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            shedding: AtomicBool::new(false),
            shed: Notify::new(),
        }
    }

    fn progressed(&self) {
        self.last_progress
            .store(self.clock.now_ms(), Ordering::Release);
    }

    fn write_refused(&self) {
        let _ = self.blocked_since.compare_exchange(
            0,
            self.clock.now_ms(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    fn written_out(&self) {
        self.blocked_since.store(0, Ordering::Release);
    }

    /// How long this connection has been stalled at `now`, if it is: its output blocked, or
    /// no request being handled and no byte moved.
    fn stalled_for(&self, now: u64) -> Option<u64> {
        let blocked = self.blocked_since.load(Ordering::Acquire);
        if blocked != 0 {
            return Some(now.saturating_sub(blocked));
        }
        if self.busy.load(Ordering::Acquire) == 0 {
            return Some(now.saturating_sub(self.last_progress.load(Ordering::Acquire)));
        }
        None
    }
}

/// Marks a request of a connection as being handled, until dropped.
struct Busy(Arc<Conn>);

impl Busy {
    fn enter(conn: Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // Handling a request is progress: the stall clock restarts when it ends.
        self.0.progressed();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, for shedding.
#[derive(Default)]
struct Registry(Mutex<HashMap<u64, Arc<Conn>>>);

impl Registry {
    fn insert(&self, conn: Arc<Conn>) {
        self.lock().insert(conn.id, conn);
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Tells the connection stalled longest, at least `min_ms`, to close; does nothing while a
    /// connection told earlier is still open (its slot is about to be free).
    fn shed_one(&self, now: u64, min_ms: u64) {
        let open = self.lock();
        if open.values().any(|c| c.shedding.load(Ordering::Acquire)) {
            return;
        }
        let victim = open
            .values()
            .filter_map(|c| Some((c.stalled_for(now)?, c)))
            .filter(|(stalled, _)| *stalled >= min_ms)
            .max_by_key(|(stalled, _)| *stalled);
        if let Some((_, conn)) = victim {
            conn.shedding.store(true, Ordering::Release);
            conn.shed.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The accepted socket, recording progress in its [`Conn`]: bytes read or written, a write
/// the socket refused, and the moment hyper's output is all written out (its flush, which
/// hyper calls only once its write buffer is empty).
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl Tracked {
    fn after_write(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(n)) if *n > 0 => self.conn.progressed(),
            Poll::Pending => self.conn.write_refused(),
            _ => {}
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.progressed();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.after_write(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.after_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            this.conn.written_out();
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
