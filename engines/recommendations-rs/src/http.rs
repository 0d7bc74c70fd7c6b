//! The context as a service behind the gateway (`service_app` in
//! `variants/distributed/http.py`): `POST /rpc/<method>` with JSON, `GET /healthz`, the same
//! statuses; and the small HTTP/1.1 client that calls orders' `/rpc/since`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::ipc::{os_message, MAX_FRAME};
use crate::log::{error, warning};
use crate::rpc::{py_repr, Answer, Dispatcher, ErrorBody, Format, CONTEXT};

pub const MAX_RPC_BODY: i128 = 4 * 1024 * 1024;
const BACKLOG: libc::c_int = 2048;
const POLL: Duration = Duration::from_millis(100);

/// `ERROR_STATUS`: a domain error code's HTTP status; anything else is a 500.
pub fn error_status(code: &str) -> u16 {
    match code {
        "not_found" => 404,
        "invalid_request" => 422,
        "out_of_stock" | "idempotency_conflict" => 409,
        "unavailable" => 503,
        _ => 500,
    }
}

#[derive(Serialize)]
struct Health<'a> {
    variant: &'a str,
    status: &'a str,
    components: std::collections::BTreeMap<&'a str, &'a str>,
}

/// Request threads over tiny_http's connection threads.
pub struct HttpServer {
    server: Arc<Server>,
    /// A duplicate of the listening socket, to shut it down (tiny_http's accept thread
    /// owns the original).
    listener: TcpListener,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl HttpServer {
    pub fn bind(
        host: &str,
        port: u16,
        threads: usize,
        dispatcher: Arc<Dispatcher>,
    ) -> io::Result<HttpServer> {
        let listener = TcpListener::bind((host, port))?;
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let shutdown_handle = listener.try_clone()?;
        let server = Server::from_listener(listener, None)
            .map_err(|e| io::Error::new(io::ErrorKind::Other, e.to_string()))?;
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads.max(1) {
            let (server, stopping, dispatcher) = (
                Arc::clone(&server),
                Arc::clone(&stopping),
                Arc::clone(&dispatcher),
            );
            workers.push(
                thread::Builder::new()
                    .name("http-worker".into())
                    .spawn(move || work(&server, &stopping, &dispatcher))?,
            );
        }
        Ok(HttpServer {
            server,
            listener: shutdown_handle,
            stopping,
            workers,
        })
    }

    /// Stops accepting, lets requests in progress finish (up to `grace`); requests not yet
    /// started are dropped with their connections when the process exits.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes tiny_http's accept() (EINVAL), which ends its accept thread and closes the port.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.workers.iter().any(|w| !w.is_finished()) {
            thread::sleep(Duration::from_millis(10));
        }
        self.workers.iter().all(|w| w.is_finished())
    }
}

fn work(server: &Server, stopping: &AtomicBool, dispatcher: &Dispatcher) {
    while !stopping.load(Ordering::SeqCst) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => respond(request, dispatcher),
            Ok(None) => {}
            Err(e) => {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                // tiny_http's accept thread ends on any accept error: nothing would ever be
                // served again, so let the supervisor restart this process.
                error!("the HTTP server stopped accepting: {}; exiting", e);
                crate::log::flush();
                unsafe { libc::_exit(1) };
            }
        }
    }
}

fn respond(mut request: Request, dispatcher: &Dispatcher) {
    let path = wsgi_path(request.url());
    let verb = request.method().to_string();
    let (status, body) = if let Some(method) = path.strip_prefix("/rpc/") {
        if *request.method() != Method::Post {
            bad(405, "method_not_allowed", &verb)
        } else {
            match content_length(&request) {
                Err(()) => bad(400, "bad_request", "Content-Length"),
                Ok(n) if !(0..=MAX_RPC_BODY).contains(&n) => {
                    if n > i128::from(MAX_FRAME) {
                        // tiny_http would allocate the whole announced body to skip it once
                        // the request is dropped: never answer, never drop this one.
                        warning!("dropping a request that announces {} bytes", n);
                        std::mem::forget(request);
                        return;
                    }
                    bad(413, "payload_too_large", "")
                }
                Ok(n) => {
                    let mut args = Vec::with_capacity(n as usize);
                    match request.as_reader().take(n as u64).read_to_end(&mut args) {
                        Ok(_) => rpc(dispatcher, method, &args),
                        Err(_) => return, // the client went away
                    }
                }
            }
        }
    } else if path == "/healthz" && matches!(request.method(), Method::Get | Method::Head) {
        let components = [(CONTEXT, "ok")].into_iter().collect();
        let health = Health {
            variant: "distributed",
            status: "ok",
            components,
        };
        (200, Format::Json.encode(&health))
    } else {
        let shown: String = path.chars().take(100).collect();
        bad(404, "not_found", &format!("no route {}", py_repr(&shown)))
    };
    let response = Response::from_data(body)
        .with_status_code(status)
        .with_header(json_header())
        .with_chunked_threshold(usize::MAX);
    let _ = request.respond(response);
}

fn rpc(dispatcher: &Dispatcher, method: &str, args: &[u8]) -> (u16, Vec<u8>) {
    let Answer { ok, body, error } = dispatcher.handle(Format::Json, method, args);
    let status = if ok {
        200
    } else {
        error_status(error.as_deref().unwrap_or(""))
    };
    (status, body)
}

fn bad(status: u16, code: &str, detail: &str) -> (u16, Vec<u8>) {
    let body = ErrorBody {
        error: code.to_string(),
        detail: detail.to_string(),
    };
    (status, Format::Json.encode(&body))
}

fn json_header() -> Header {
    Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).expect("a valid header")
}

/// `int(environ.get("CONTENT_LENGTH") or 0)`: absent or empty is 0; Python's int() syntax.
fn content_length(request: &Request) -> Result<i128, ()> {
    let value = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Length"))
        .map(|h| h.value.as_str().trim().to_string());
    match value.as_deref() {
        None | Some("") => Ok(0),
        Some(text) => parse_py_int(text),
    }
}

fn parse_py_int(text: &str) -> Result<i128, ()> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|c| c.is_ascii_digit() || c == b'_')
    {
        return Err(());
    }
    let mut value: i128 = 0;
    for c in digits.bytes().filter(|c| *c != b'_') {
        value = value
            .saturating_mul(10)
            .saturating_add(i128::from(c - b'0'));
    }
    Ok(if negative { -value } else { value })
}

/// PATH_INFO as a WSGI server gives it: without the query, percent-decoded, bytes as latin-1.
fn wsgi_path(url: &str) -> String {
    let raw = url.split('?').next().unwrap_or("").as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(char::from((h * 16 + l) as u8));
                i += 3;
                continue;
            }
        }
        out.push(char::from(raw[i]));
        i += 1;
    }
    out
}

/// The client of one service's `/rpc/<method>` (`HttpTransport`, without its circuit breaker):
/// one keep-alive connection; a call is tried up to 3 times within its deadline (this
/// program only calls `orders.since`, which `IDEMPOTENT` lists).
pub struct HttpClient {
    service: String,
    host: String,
    addr: SocketAddr,
    connect_timeout: Duration,
    call_timeout: Duration,
    idle: Option<BufReader<TcpStream>>,
}

const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(20);
const MAX_LINE: usize = 64 * 1024;

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    keep_alive: bool,
}

enum Failure {
    /// Nothing came back on a connection that may have been closed while idle: safe to resend.
    Stale(String),
    Other(String),
}

impl HttpClient {
    pub fn new(
        service: &str,
        base_url: &str,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<HttpClient, String> {
        let bad = || {
            format!(
                "{}: expected http://host:port, got {}",
                service,
                py_repr(base_url)
            )
        };
        let host = base_url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|h| {
                h.rsplit(':')
                    .next()
                    .map_or(false, |p| p.parse::<u16>().is_ok())
            })
            .ok_or_else(bad)?;
        let addr = host
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(bad)?;
        Ok(HttpClient {
            service: service.to_string(),
            host: host.to_string(),
            addr,
            connect_timeout: connect_timeout.max(Duration::from_millis(1)),
            call_timeout: call_timeout.max(Duration::from_millis(1)),
            idle: None,
        })
    }

    /// `(ok, body)`: 200 is a result; a JSON error answer is the service's own error report.
    pub fn call(&mut self, method: &str, args: &[u8]) -> Result<(bool, Vec<u8>), String> {
        let deadline = Instant::now() + self.call_timeout;
        let mut last = "not tried".to_string();
        for attempt in 0..ATTEMPTS {
            match self.exchange(method, args, deadline) {
                Ok(reply) if reply.status == 200 => return Ok((true, reply.body)),
                Ok(reply) => {
                    let is_rpc = reply.content_type.starts_with("application/json");
                    if is_rpc && (reply.status != 500 || attempt + 1 == ATTEMPTS) {
                        return Ok((false, reply.body));
                    }
                    last = format!("HTTP {}", reply.status);
                }
                Err(e) => last = e,
            }
            let delay = BACKOFF * 2u32.pow(attempt);
            let delay = delay / 2 + jitter(delay / 2);
            if attempt + 1 == ATTEMPTS || Instant::now() + delay >= deadline {
                break;
            }
            thread::sleep(delay);
        }
        Err(format!("{}.{}: {}", self.service, method, last))
    }

    fn exchange(&mut self, method: &str, args: &[u8], deadline: Instant) -> Result<Reply, String> {
        let mut request = format!(
            "POST /rpc/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            method,
            self.host,
            args.len()
        )
        .into_bytes();
        request.extend_from_slice(args);
        let (mut conn, reused) = match self.take_idle() {
            Some(conn) => (conn, true),
            None => (self.connect(deadline)?, false),
        };
        let mut outcome = round_trip(&mut conn, &request, deadline);
        if reused && matches!(outcome, Err(Failure::Stale(_))) {
            conn = self.connect(deadline)?;
            outcome = round_trip(&mut conn, &request, deadline);
        }
        match outcome {
            Ok(reply) => {
                if reply.keep_alive {
                    self.idle = Some(conn);
                }
                Ok(reply)
            }
            Err(Failure::Stale(e) | Failure::Other(e)) => Err(e),
        }
    }

    /// The pooled connection, unless the server closed it while idle (or sent something
    /// unasked): then a new one is needed.
    fn take_idle(&mut self) -> Option<BufReader<TcpStream>> {
        let conn = self.idle.take()?;
        let stream = conn.get_ref();
        let quiet = conn.buffer().is_empty()
            && stream.set_nonblocking(true).is_ok()
            && matches!(stream.peek(&mut [0u8; 1]), Err(ref e) if e.kind() == io::ErrorKind::WouldBlock);
        (quiet && stream.set_nonblocking(false).is_ok()).then_some(conn)
    }

    fn connect(&self, deadline: Instant) -> Result<BufReader<TcpStream>, String> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err("TimeoutError: deadline passed".to_string());
        }
        let stream = TcpStream::connect_timeout(&self.addr, self.connect_timeout.min(remaining))
            .map_err(|e| describe(&e))?;
        stream.set_nodelay(true).map_err(|e| describe(&e))?;
        Ok(BufReader::new(stream))
    }
}

fn round_trip(
    conn: &mut BufReader<TcpStream>,
    request: &[u8],
    deadline: Instant,
) -> Result<Reply, Failure> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(Failure::Other("TimeoutError: deadline passed".to_string()));
    }
    let stream = conn.get_mut();
    let timeouts = stream
        .set_read_timeout(Some(remaining))
        .and_then(|_| stream.set_write_timeout(Some(remaining)));
    timeouts.map_err(|e| Failure::Other(describe(&e)))?;
    if let Err(e) = stream.write_all(request) {
        return Err(if is_reset(&e) {
            Failure::Stale(describe(&e))
        } else {
            Failure::Other(describe(&e))
        });
    }
    let status_line = match read_line(conn) {
        Ok(line) if line.is_empty() => {
            return Err(Failure::Stale(
                "RemoteDisconnected: Remote end closed connection without response".to_string(),
            ))
        }
        Ok(line) => line,
        Err(e) if is_reset(&e) => return Err(Failure::Stale(describe(&e))),
        Err(e) => return Err(Failure::Other(describe(&e))),
    };
    parse_reply(conn, &status_line).map_err(|e| Failure::Other(describe(&e)))
}

fn parse_reply(conn: &mut BufReader<TcpStream>, status_line: &str) -> io::Result<Reply> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.trim().parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| bad("BadStatusLine"))?;
    let mut length = None;
    let mut content_type = String::new();
    let mut chunked = false;
    let mut keep_alive = version == "HTTP/1.1";
    loop {
        let line = read_line(conn)?;
        if line.is_empty() {
            return Err(bad("IncompleteRead: headers"));
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => continue,
        };
        match name.as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| bad("bad Content-Length"))?,
                )
            }
            "content-type" => content_type = value,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(conn)?
    } else if let Some(n) = length {
        let mut body = vec![0u8; n];
        conn.read_exact(&mut body)?;
        body
    } else {
        keep_alive = false;
        let mut body = Vec::new();
        conn.read_to_end(&mut body)?;
        body
    };
    Ok(Reply {
        status,
        content_type,
        body,
        keep_alive,
    })
}

fn read_chunked(conn: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(conn)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            while !matches!(read_line(conn)?.as_str(), "\r\n" | "\n" | "") {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])?;
        read_line(conn)?;
    }
}

/// One line including its end, or "" at the end of the stream.
fn read_line(conn: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = Vec::new();
    conn.by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)?;
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// Like Python's `f"{type(exc).__name__}: {exc}"` for the usual socket errors.
fn describe(e: &io::Error) -> String {
    let errno = e.raw_os_error();
    let kind = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            return "TimeoutError: timed out".to_string()
        }
        io::ErrorKind::ConnectionRefused => "ConnectionRefusedError",
        io::ErrorKind::ConnectionReset => "ConnectionResetError",
        io::ErrorKind::ConnectionAborted => "ConnectionAbortedError",
        io::ErrorKind::BrokenPipe => "BrokenPipeError",
        io::ErrorKind::UnexpectedEof => "IncompleteRead",
        io::ErrorKind::InvalidData => return e.to_string(),
        _ => "OSError",
    };
    match errno {
        Some(n) => format!("{}: [Errno {}] {}", kind, n, os_message(e)),
        None => format!("{}: {}", kind, e),
    }
}

/// Equal jitter without a random-number crate: the clock's nanoseconds are random enough here.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let max_nanos = max.as_nanos().max(1) as u64;
    Duration::from_nanos(u64::from(nanos) % max_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_lengths_like_wsgi() {
        assert_eq!(wsgi_path("/rpc/related?x=1"), "/rpc/related");
        assert_eq!(wsgi_path("/a%20b%zz%4"), "/a b%zz%4");
        assert_eq!(wsgi_path("/%C3%A9"), "/\u{c3}\u{a9}");
        assert_eq!(parse_py_int("12"), Ok(12));
        assert_eq!(parse_py_int("+1_000"), Ok(1000));
        assert_eq!(parse_py_int("-1"), Ok(-1));
        assert!(parse_py_int("abc").is_err());
        assert!(parse_py_int("1__0").is_err());
        assert!(parse_py_int("").is_err());
        assert_eq!(error_status("invalid_request"), 422);
        assert_eq!(error_status("shop_error"), 500);
    }
}
