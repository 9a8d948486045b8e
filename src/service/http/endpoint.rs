//! [`Endpoint`]: the server, an accept thread and a fixed pool of workers over std's `TcpListener`.
//!
//! Bounds, so that no client can hold the endpoint (let alone the program): a request head
//! of at most [`MAX_HEAD_BYTES`], read within [`HEAD_DEADLINE`]; a body only where a route
//! takes one (`POST`), of at most [`MAX_BODY_BYTES`], read within [`BODY_DEADLINE`]; an answer
//! written within [`WRITE_DEADLINE`]; one request per connection; at most `workers`
//! connections served and four times as many queued, the rest answered `503` by the accept
//! thread at once.

use super::context::Context;
use super::metrics::DEFAULT_TOP_SITES;
use super::routes::{self, Request, Response};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Worker threads of an endpoint unless configured otherwise.
pub const DEFAULT_WORKERS: usize = 4;
/// The largest request head accepted (request line and headers); larger gets `431`.
pub(crate) const MAX_HEAD_BYTES: usize = 8192;
/// Time a client has to send its whole request head; slower gets `408`.
pub(crate) const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// The largest request body accepted (a `POST` to `/debug/pprof/symbol`: some 70,000
/// addresses); larger gets `413`.
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;
/// Time a client has to send its whole body, once its head is in; slower gets `408`.
pub(crate) const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Time a client has to take the whole answer; slower is cut off.
pub(crate) const WRITE_DEADLINE: Duration = Duration::from_secs(30);
/// Connections waiting for a worker, per worker; more get `503`.
pub(crate) const QUEUED_PER_WORKER: usize = 4;
/// Bytes written per `write` call, so that the write deadline is checked between them.
const WRITE_CHUNK: usize = 64 * 1024;

/// Configures and starts an HTTP endpoint (see [`crate::http`]).
///
/// ```no_run
/// let endpoint = heapsampler::http::Endpoint::new("127.0.0.1:6060")
///     .workers(2)
///     .top_sites(10)
///     .start()?;
/// println!("serving on {}", endpoint.local_addr());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    addr: String,
    workers: usize,
    top_sites: usize,
}

impl Endpoint {
    /// An endpoint on `addr`: `host:port`, or just `port` / `:port` for the loopback address
    /// `127.0.0.1` (port 0 picks a free one). Other hosts are served as given: bind a
    /// non-loopback address only behind access control, since profiles show code addresses.
    ///
    /// ```
    /// let e = heapsampler::http::Endpoint::new(":6060");
    /// assert_eq!(e.addr(), "127.0.0.1:6060");
    /// ```
    pub fn new(addr: &str) -> Endpoint {
        let addr = addr.trim();
        let port_only = addr.strip_prefix(':').unwrap_or(addr);
        let addr = if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
            format!("127.0.0.1:{port_only}")
        } else {
            addr.to_string()
        };
        Endpoint {
            addr,
            workers: DEFAULT_WORKERS,
            top_sites: DEFAULT_TOP_SITES,
        }
    }

    /// The address to bind.
    ///
    /// ```
    /// assert_eq!(heapsampler::http::Endpoint::new("0").addr(), "127.0.0.1:0");
    /// ```
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Serves at most `n` requests at once (at least 1; default [`DEFAULT_WORKERS`]), each on
    /// its own thread; `4 n` more wait, and further connections get `503`.
    ///
    /// ```
    /// let e = heapsampler::http::Endpoint::new("0").workers(8);
    /// assert_eq!(e.worker_count(), 8);
    /// ```
    pub fn workers(mut self, n: usize) -> Endpoint {
        self.workers = n.clamp(1, 256);
        self
    }

    /// The number of worker threads.
    ///
    /// ```
    /// assert_eq!(heapsampler::http::Endpoint::new("0").worker_count(), heapsampler::http::DEFAULT_WORKERS);
    /// ```
    pub fn worker_count(&self) -> usize {
        self.workers
    }

    /// Names the `n` sites with the most live bytes in `/metrics` (default
    /// [`DEFAULT_TOP_SITES`], at most 1,000): `heapsampler_site_live_bytes{site="<function>"}`,
    /// plus one `site="other"` for the rest, so the number of series stays bounded.
    ///
    /// ```
    /// let e = heapsampler::http::Endpoint::new("0").top_sites(5);
    /// assert_eq!(e.top_site_count(), 5);
    /// ```
    pub fn top_sites(mut self, n: usize) -> Endpoint {
        self.top_sites = n.min(1000);
        self
    }

    /// The number of sites named in `/metrics`.
    ///
    /// ```
    /// assert_eq!(heapsampler::http::Endpoint::new("0").top_site_count(), 20);
    /// ```
    pub fn top_site_count(&self) -> usize {
        self.top_sites
    }

    /// Binds the address and starts the threads (`heapsampler-http`, `heapsampler-http-N`).
    /// Fails when the address does not resolve or cannot be bound.
    ///
    /// ```
    /// let endpoint = heapsampler::http::Endpoint::new("127.0.0.1:0").start()?;
    /// assert_ne!(endpoint.local_addr().port(), 0);
    /// endpoint.stop();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start(self) -> io::Result<EndpointHandle> {
        let _guard = crate::sys::guard::enter_guard();
        let addrs: Vec<SocketAddr> = self.addr.to_socket_addrs()?.collect();
        let listener = TcpListener::bind(&addrs[..])?;
        let local_addr = listener.local_addr()?;
        let context = Arc::new(Context::new(self.top_sites));
        let (sender, receiver) = mpsc::sync_channel::<TcpStream>(self.workers * QUEUED_PER_WORKER);
        let receiver = Arc::new(parking_lot::Mutex::new(receiver));
        let mut threads = Vec::with_capacity(self.workers + 1);
        for i in 0..self.workers {
            let receiver = receiver.clone();
            let context = context.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("heapsampler-http-{i}"))
                    .spawn(move || {
                        let _guard = crate::sys::guard::enter_guard();
                        loop {
                            // One worker waits on the queue at a time; the others wait for
                            // the lock, which is as good.
                            let next = receiver.lock().recv();
                            let Ok(stream) = next else { return };
                            serve_connection(stream, &context);
                        }
                    })?,
            );
        }
        let accept_context = context.clone();
        threads.push(
            std::thread::Builder::new()
                .name("heapsampler-http".into())
                .spawn(move || accept_loop(listener, sender, &accept_context))?,
        );
        Ok(EndpointHandle {
            local_addr,
            context,
            threads,
        })
    }
}

/// Starts an endpoint on `addr` with the defaults (see [`Endpoint::new`]). It serves until
/// the handle is dropped or [`stopped`](EndpointHandle::stop).
///
/// ```
/// let endpoint = heapsampler::http::serve("127.0.0.1:0")?;
/// let url = format!("http://{}/debug/pprof/heap", endpoint.local_addr());
/// assert!(url.starts_with("http://127.0.0.1:"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve(addr: &str) -> io::Result<EndpointHandle> {
    Endpoint::new(addr).start()
}

/// A running endpoint; dropping it stops it (requests in progress finish first).
///
/// ```
/// let endpoint = heapsampler::http::serve("0")?;
/// println!("go tool pprof http://{}/debug/pprof/heap", endpoint.local_addr());
/// drop(endpoint);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct EndpointHandle {
    local_addr: SocketAddr,
    context: Arc<Context>,
    threads: Vec<JoinHandle<()>>,
}

impl EndpointHandle {
    /// The address the endpoint listens on (with the port chosen when it was 0).
    ///
    /// ```
    /// let endpoint = heapsampler::http::serve("127.0.0.1:0")?;
    /// assert!(endpoint.local_addr().ip().is_loopback());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in progress finish, and joins the threads.
    ///
    /// ```
    /// heapsampler::http::serve("0")?.stop();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        let _guard = crate::sys::guard::enter_guard();
        self.context.stopping.store(true, Ordering::Release);
        // Wake the accept thread, blocked in `accept`, with a connection of our own.
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for EndpointHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for EndpointHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointHandle")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

fn accept_loop(listener: TcpListener, sender: SyncSender<TcpStream>, context: &Context) {
    let _guard = crate::sys::guard::enter_guard();
    for stream in listener.incoming() {
        if context.stopping.load(Ordering::Acquire) {
            // Dropping `sender` lets the workers finish their queue and end.
            return;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, say: do not spin on the error.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        match sender.try_send(stream) {
            Ok(()) => {}
            Err(TrySendError::Full(mut stream)) => {
                context.rejected.fetch_add(1, Ordering::Relaxed);
                // A fresh socket's send buffer takes this small answer without blocking;
                // the timeout is a bound all the same.
                let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                let busy = Response::text(503, "busy: every worker is serving; retry\n");
                let _ = stream.write_all(&busy.head(false));
                let _ = stream.write_all(&busy.body);
                // Take what the client already sent, without waiting: closing over unread
                // bytes resets the connection, which can destroy the answer.
                let _ = stream.shutdown(std::net::Shutdown::Write);
                if stream.set_nonblocking(true).is_ok() {
                    let _ = stream.read(&mut [0u8; 4096]);
                }
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Reads one request, answers it, closes the connection.
fn serve_connection(mut stream: TcpStream, context: &Context) {
    if context.stopping.load(Ordering::Acquire) {
        return;
    }
    let _ = stream.set_nodelay(true);
    let response = match read_head(&mut stream) {
        Ok((head, rest)) => match parse_head(&head).and_then(|(mut request, length)| {
            request.body = read_body(&mut stream, rest, length)?;
            Ok(request)
        }) {
            Ok(request) => {
                let head_only = request.method == "HEAD";
                let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    routes::route(&request, context)
                }))
                .unwrap_or_else(|_| Response::text(500, "internal error\n"));
                write_response(&mut stream, &response, head_only, false);
                context.served.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(response) => response,
        },
        Err(Some(response)) => response,
        Err(None) => return,
    };
    // A refused request may have left bytes unread.
    write_response(&mut stream, &response, false, true);
}

/// The request head, up to and including its blank line, and the bytes read past it (the
/// start of a body). `Err(Some(answer))` for a client that sent too much or too slowly;
/// `Err(None)` when it went away.
fn read_head(stream: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>), Option<Response>> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Some(Response::text(
                408,
                "request head not received in time\n",
            )));
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Some(Response::text(
                    408,
                    "request head not received in time\n",
                )));
            }
            Err(_) => return Err(None),
        };
        let start = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = head.split_off(start + end + 4);
            return Ok((head, rest));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(Some(Response::text(
                431,
                &format!("request head larger than {MAX_HEAD_BYTES} bytes\n"),
            )));
        }
    }
}

/// The body of `length` bytes, `rest` of it already read with the head. A client gone or
/// too slow gets `408` (it may still read it).
fn read_body(
    stream: &mut TcpStream,
    mut rest: Vec<u8>,
    length: usize,
) -> Result<Vec<u8>, Response> {
    let deadline = Instant::now() + BODY_DEADLINE;
    let late = || Response::text(408, "request body not received in time\n");
    rest.truncate(length);
    rest.reserve_exact(length - rest.len());
    let mut buf = [0u8; 8192];
    while rest.len() < length {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        let _ = stream.set_read_timeout(Some(left));
        let want = (length - rest.len()).min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Response::text(
                    400,
                    "request body shorter than its Content-Length\n",
                ));
            }
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(late()),
        }
    }
    Ok(rest)
}

/// Parses a complete request head, with the length of the body that follows; refuses what
/// this endpoint does not serve.
fn parse_head(head: &[u8]) -> Result<(Request, usize), Response> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Response::text(400, "incomplete request head\n"));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Response::text(431, "more than 64 request headers\n"));
        }
        Err(e) => return Err(Response::text(400, &format!("malformed request: {e}\n"))),
    }
    let method = parsed.method.unwrap_or("");
    let target = parsed.path.unwrap_or("/");
    let request = Request::parse(method, target)
        .ok_or_else(|| Response::text(400, "the request target is not a path\n"))?;
    let post = method == "POST" && routes::POST_PATHS.contains(&request.path.as_str());
    if method != "GET" && method != "HEAD" && !post {
        let mut r = Response::text(
            405,
            "only GET and HEAD are served (and POST to /debug/pprof/symbol)\n",
        );
        r.extra.push(("Allow", "GET, HEAD".into()));
        return Err(r);
    }
    let mut length = None;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(if post {
                Response::text(411, "a request body needs a Content-Length\n")
            } else {
                Response::text(413, "no request body is accepted\n")
            });
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            length = match (length, n) {
                (None, Some(n)) => Some(n),
                _ => {
                    return Err(Response::text(
                        400,
                        "one Content-Length, a number, is needed\n",
                    ));
                }
            };
        }
    }
    let length = length.unwrap_or(0);
    if length > 0 && !post {
        return Err(Response::text(413, "no request body is accepted\n"));
    }
    if length > MAX_BODY_BYTES as u64 {
        return Err(Response::text(
            413,
            &format!("request body larger than {MAX_BODY_BYTES} bytes\n"),
        ));
    }
    Ok((request, length as usize))
}

/// Writes the answer within [`WRITE_DEADLINE`], chunk by chunk; gives up on a client that
/// does not read.
fn write_response(stream: &mut TcpStream, response: &Response, head_only: bool, drain: bool) {
    let deadline = Instant::now() + WRITE_DEADLINE;
    let head = response.head(head_only);
    let body: &[u8] = if head_only { &[] } else { &response.body };
    for chunk in std::iter::once(&head[..]).chain(body.chunks(WRITE_CHUNK)) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = stream.set_write_timeout(Some(left));
        if stream.write_all(chunk).is_err() {
            return;
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if !drain {
        return;
    }
    // Closing with unread bytes (an oversized head's rest) sends a reset, which can destroy
    // the answer before the client reads it: take a little of what is left first, briefly.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_only_addresses_are_loopback() {
        assert_eq!(Endpoint::new("6060").addr(), "127.0.0.1:6060");
        assert_eq!(Endpoint::new(":6060").addr(), "127.0.0.1:6060");
        assert_eq!(Endpoint::new(" [::1]:6060 ").addr(), "[::1]:6060");
        assert_eq!(Endpoint::new("0.0.0.0:80").addr(), "0.0.0.0:80");
        assert_eq!(Endpoint::new("0").workers(0).worker_count(), 1);
        assert_eq!(Endpoint::new("0").top_sites(1 << 40).top_site_count(), 1000);
    }

    #[test]
    fn heads_are_parsed_and_refused_with_a_status() {
        let status = |head: &[u8]| match parse_head(head) {
            Ok((r, _)) => (200, r.path),
            Err(r) => (r.status, String::new()),
        };
        assert_eq!(
            status(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            (200, "/metrics".into())
        );
        assert_eq!(status(b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(status(b"PUT /debug/pprof/symbol HTTP/1.1\r\n\r\n").0, 405);
        let symbol = |headers: &str| {
            let head = format!("POST /debug/pprof/symbol HTTP/1.1\r\n{headers}\r\n");
            parse_head(head.as_bytes())
                .map(|(_, n)| n)
                .map_err(|r| r.status)
        };
        assert_eq!(symbol(""), Ok(0));
        assert_eq!(symbol("Content-Length: 12\r\n"), Ok(12));
        assert_eq!(symbol("Content-Length: 1048576\r\n"), Ok(MAX_BODY_BYTES));
        assert_eq!(symbol("Content-Length: 1048577\r\n"), Err(413));
        assert_eq!(
            symbol("Content-Length: 99999999999999999999999\r\n"),
            Err(400)
        );
        assert_eq!(symbol("Content-Length: -1\r\n"), Err(400));
        assert_eq!(
            symbol("Content-Length: 1\r\nContent-Length: 1\r\n"),
            Err(400)
        );
        assert_eq!(symbol("Transfer-Encoding: chunked\r\n"), Err(411));
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").0,
            413
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0,
            200
        );
        assert_eq!(status(b"GET\x01 / HTTP/1.1\r\n\r\n").0, 400);
        assert_eq!(status(b"GET http://x/ HTTP/1.1\r\n\r\n").0, 400);
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).0,
            431
        );
    }
}
