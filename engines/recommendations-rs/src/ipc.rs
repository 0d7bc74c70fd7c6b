//! The process family's IPC channel (`variants/multiprocess/ipc.py`): length-prefixed frames
//! over a Unix socket, a thread per connection on the server, one lazily opened connection on
//! the client.
//!
//! Wire format (big-endian): a request is `u32 length, u8 method length, method, args`, an
//! answer `u32 length, u8 ok, body`; `length` counts the bytes after the 5-byte header.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::log::{debug, error};

pub const HEADER: usize = 5;
pub const MAX_FRAME: u32 = 64 * 1024 * 1024;
pub const PING: &str = "__ping__";
const BACKLOG: libc::c_int = 1024;
const READ_BUFFER: usize = 16 * 1024;

pub fn request_frame(method: &str, args: &[u8]) -> Vec<u8> {
    let name = method.as_bytes();
    assert!(name.len() <= 255, "a method name fits in a byte");
    let mut frame = Vec::with_capacity(HEADER + name.len() + args.len());
    frame.extend_from_slice(&((name.len() + args.len()) as u32).to_be_bytes());
    frame.push(name.len() as u8);
    frame.extend_from_slice(name);
    frame.extend_from_slice(args);
    frame
}

pub fn answer_frame(ok: bool, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.push(u8::from(ok));
    frame.extend_from_slice(body);
    frame
}

#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    TooLarge(u32),
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => write!(f, "connection closed"),
            FrameError::TooLarge(n) => write!(
                f,
                "frame of {} bytes is over the {}-byte limit",
                n, MAX_FRAME
            ),
            FrameError::Io(e) => write!(f, "{}", e),
        }
    }
}

/// One frame: (the header's byte, the body).
pub fn read_frame(r: &mut impl Read) -> Result<(u8, Vec<u8>), FrameError> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a frame header",
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if length > MAX_FRAME {
        return Err(FrameError::TooLarge(length));
    }
    let mut body = vec![0u8; length as usize];
    r.read_exact(&mut body).map_err(FrameError::Io)?;
    Ok((header[4], body))
}

pub type Handler = Arc<dyn Fn(&str, &[u8]) -> (bool, Vec<u8>) + Send + Sync>;

struct State {
    stopping: bool,
    inflight: usize,
    conns: HashMap<u64, UnixStream>,
    next_id: u64,
}

struct Shared {
    state: Mutex<State>,
    idle: Condvar,
    handler: Handler,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves `handler` on a Unix socket this process bound itself.
pub struct IpcServer {
    path: PathBuf,
    /// (device, inode) of the socket file as bound, to recognise it at stop time.
    bound: (u64, u64),
    shared: Arc<Shared>,
    wake: RawFd,
    accept: Option<JoinHandle<()>>,
}

impl IpcServer {
    /// Binds `path` (replacing a stale socket file), readable only by this user.
    pub fn bind(path: &Path, handler: Handler) -> io::Result<IpcServer> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        // A second listen() on Linux just sets the backlog (std's bind uses 128).
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let meta = fs::metadata(path)?;
        let mut pipe = [0 as RawFd; 2];
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                stopping: false,
                inflight: 0,
                conns: HashMap::new(),
                next_id: 0,
            }),
            idle: Condvar::new(),
            handler,
        });
        let (wake_r, wake_w) = (pipe[0], pipe[1]);
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("ipc-accept".into())
            .spawn(move || accept_loop(listener, wake_r, accept_shared))?;
        Ok(IpcServer {
            path: path.to_path_buf(),
            bound: (meta.dev(), meta.ino()),
            shared,
            wake: wake_w,
            accept: Some(accept),
        })
    }

    pub fn inflight(&self) -> usize {
        self.shared.lock().inflight
    }

    /// Stops accepting, lets calls in progress finish (up to `grace`), closes every connection.
    /// Returns false if calls were still running when the grace period ran out.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.shared.lock().stopping = true;
        unsafe {
            libc::write(self.wake, b"x".as_ptr().cast(), 1);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join(); // closes the listening socket
        }
        self.unlink_if_ours();
        let deadline = Instant::now() + grace;
        let mut state = self.shared.lock();
        while state.inflight > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .shared
                .idle
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let drained = state.inflight == 0;
        for conn in state.conns.values() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        drained
    }

    /// A replacement engine may have bound the same path during a live swap: its socket file
    /// is a different inode, and must be left alone.
    fn unlink_if_ours(&self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.bound => {
                let _ = fs::remove_file(&self.path);
            }
            Ok(_) => debug!(
                "{} was bound again by another process; leaving it",
                self.path.display()
            ),
            Err(_) => {}
        }
    }
}

impl Drop for IpcServer {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.wake);
        }
    }
}

fn accept_loop(listener: UnixListener, wake: RawFd, shared: Arc<Shared>) {
    let mut fds = [
        libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            error!("poll failed on the IPC socket: {}", e);
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        if fds[1].revents != 0 || shared.lock().stopping {
            break;
        }
        if fds[0].revents == 0 {
            continue;
        }
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    error!("accept failed: {}", e);
                    thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        };
        let id = {
            let mut state = shared.lock();
            if state.stopping {
                break;
            }
            let id = state.next_id;
            state.next_id += 1;
            match conn.try_clone() {
                Ok(clone) => {
                    state.conns.insert(id, clone);
                }
                Err(e) => {
                    error!("cannot track a connection: {}", e);
                    continue;
                }
            }
            id
        };
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("ipc-conn".into())
            .spawn(move || serve(conn, id, conn_shared));
        if let Err(e) = spawned {
            error!("cannot start a connection thread: {}", e);
            shared.lock().conns.remove(&id);
        }
    }
    unsafe {
        libc::close(wake);
    }
}

fn serve(conn: UnixStream, id: u64, shared: Arc<Shared>) {
    if let Err(e) = serve_frames(&conn, &shared) {
        if !shared.lock().stopping {
            debug!("IPC connection ended: {}", e);
        }
    }
    shared.lock().conns.remove(&id);
}

fn serve_frames(conn: &UnixStream, shared: &Shared) -> Result<(), FrameError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, conn);
    let mut writer = conn;
    loop {
        let (name_len, body) = match read_frame(&mut reader) {
            Ok(frame) => frame,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        {
            let mut state = shared.lock();
            if state.stopping {
                return Ok(()); // unanswered: the client sees the connection close
            }
            state.inflight += 1;
        }
        let split = usize::from(name_len).min(body.len());
        let sent = match std::str::from_utf8(&body[..split]) {
            Ok(PING) => writer.write_all(&answer_frame(true, b"pong")),
            Ok(method) => {
                let (ok, result) = (shared.handler)(method, &body[split..]);
                writer.write_all(&answer_frame(ok, &result))
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the method name is not UTF-8",
            )),
        };
        {
            let mut state = shared.lock();
            state.inflight -= 1;
            if state.inflight == 0 {
                shared.idle.notify_all();
            }
        }
        sent.map_err(FrameError::Io)?;
    }
}

/// The client side (`UdsTransport`): one connection, opened lazily with a connect timeout,
/// with kernel-side read and write timeouts for every call.
pub struct UdsClient {
    path: PathBuf,
    name: String,
    connect_timeout: Duration,
    call_timeout: Duration,
    conn: Option<(BufReader<UnixStream>, UnixStream)>,
}

impl UdsClient {
    pub fn new(path: &Path, connect_timeout: Duration, call_timeout: Duration) -> UdsClient {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        UdsClient {
            path: path.to_path_buf(),
            name,
            connect_timeout: connect_timeout.max(Duration::from_millis(1)),
            call_timeout: call_timeout.max(Duration::from_millis(1)),
            conn: None,
        }
    }

    fn connect(&self) -> Result<(BufReader<UnixStream>, UnixStream), String> {
        let stream = connect_unix(&self.path, self.connect_timeout).map_err(|e| {
            let reason = if e.kind() == io::ErrorKind::WouldBlock {
                "timed out".to_string()
            } else {
                os_message(&e)
            };
            format!("cannot connect to {}: {}", self.name, reason)
        })?;
        let setup = stream
            .set_read_timeout(Some(self.call_timeout))
            .and_then(|_| stream.set_write_timeout(Some(self.call_timeout)))
            .and_then(|_| stream.try_clone());
        match setup {
            Ok(clone) => Ok((BufReader::with_capacity(READ_BUFFER, clone), stream)),
            Err(e) => Err(format!(
                "cannot connect to {}: {}",
                self.name,
                os_message(&e)
            )),
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let (_, writer) = self.conn.as_mut().expect("connected");
        writer.write_all(frame)
    }

    /// `(ok, body)` of one call; the error text is the TransportError's.
    pub fn call(&mut self, method: &str, args: &[u8]) -> Result<(bool, Vec<u8>), String> {
        let frame = request_frame(method, args);
        let pooled = self.conn.is_some();
        if !pooled {
            self.conn = Some(self.connect()?);
        }
        if let Err(e) = self.send(&frame) {
            self.conn = None;
            if !pooled || !is_stale(&e) {
                return Err(format!("cannot send to {}: {}", self.name, os_message(&e)));
            }
            self.conn = Some(self.connect()?); // the server restarted: one more try
            if let Err(e) = self.send(&frame) {
                self.conn = None;
                return Err(format!("cannot send to {}: {}", self.name, os_message(&e)));
            }
        }
        let (reader, _) = self.conn.as_mut().expect("connected");
        match read_frame(reader) {
            Ok((ok, body)) => Ok((ok == 1, body)),
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                self.conn = None; // a late answer would be read as the next call's
                Err(format!(
                    "{} did not answer {} within {} s",
                    self.name,
                    method,
                    self.call_timeout.as_secs_f64()
                ))
            }
            Err(_) => {
                self.conn = None;
                Err(format!(
                    "{} closed the connection during {}",
                    self.name, method
                ))
            }
        }
    }
}

fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ESHUTDOWN)
    )
}

/// The OS's message without Rust's " (os error N)" suffix, as Python prints `strerror`.
pub fn os_message(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A blocking connect bounded by SO_SNDTIMEO, which Linux applies to a Unix socket's
/// connect (it waits only while the listener's backlog is full); EAGAIN means timed out.
fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long or with a NUL byte",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    stream.set_write_timeout(Some(timeout))?;
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    loop {
        let rc = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
        if rc == 0 {
            return Ok(stream);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frame = request_frame("related", b"\x92\x01\x05");
        assert_eq!(&frame[..5], &[0, 0, 0, 10, 7]);
        let (small, body) = read_frame(&mut &frame[..]).unwrap();
        assert_eq!(
            (small, &body[..7], &body[7..]),
            (7, &b"related"[..], &b"\x92\x01\x05"[..])
        );
        let answer = answer_frame(false, b"err");
        assert_eq!(answer, b"\x00\x00\x00\x03\x00err");
        assert_eq!(read_frame(&mut &answer[..]).unwrap(), (0, b"err".to_vec()));
    }

    #[test]
    fn frame_errors() {
        assert!(matches!(read_frame(&mut &b""[..]), Err(FrameError::Closed)));
        assert!(matches!(
            read_frame(&mut &b"\x00\x00"[..]),
            Err(FrameError::Io(_))
        ));
        assert!(matches!(
            read_frame(&mut &b"\x80\x00\x00\x00\x01"[..]),
            Err(FrameError::TooLarge(0x8000_0000))
        ));
        assert!(matches!(
            read_frame(&mut &b"\x00\x00\x00\x04\x01ab"[..]),
            Err(FrameError::Io(_))
        ));
        let mut at_limit = (MAX_FRAME).to_be_bytes().to_vec();
        at_limit.push(1);
        assert!(matches!(
            read_frame(&mut &at_limit[..]),
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn serves_ping_and_calls_and_stops() {
        let dir = std::env::temp_dir().join(format!("rs-ipc-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("echo.sock");
        let handler: Handler =
            Arc::new(|method: &str, args: &[u8]| (method == "echo", args.to_vec()));
        let mut server = IpcServer::bind(&path, handler).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut client = UdsClient::new(&path, Duration::from_millis(500), Duration::from_secs(5));
        assert_eq!(client.call(PING, b"").unwrap(), (true, b"pong".to_vec()));
        assert_eq!(
            client.call("echo", b"abc").unwrap(),
            (true, b"abc".to_vec())
        );
        assert_eq!(client.call("other", b"x").unwrap(), (false, b"x".to_vec()));
        assert!(server.stop(Duration::from_secs(1)));
        assert!(!path.exists());
        assert!(client.call("echo", b"abc").is_err());
        let err = UdsClient::new(&path, Duration::from_millis(500), Duration::from_secs(5))
            .call("echo", b"")
            .unwrap_err();
        assert_eq!(err, "cannot connect to echo: No such file or directory");
        fs::remove_dir_all(&dir).unwrap();
    }
}
