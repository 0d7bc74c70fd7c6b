//! The lab's fault injection (`variants/faults.py`), done natively: the same control plane
//! (`<dir>/armed/<pid>`, `<dir>/recommendations.json`, SIGRTMIN+3, a poll every second) and
//! the same kinds, acting on this process.
//!
//! Only when the harness sets `ARCHLAB_FAULTS_DIR`. The signal is blocked in every thread
//! (`main` blocks it with the others before any thread starts) and taken by the main thread's
//! `sigtimedwait`, which pokes the controller thread over a channel; so it never kills the
//! process, armed or not.
//!
//! Kinds, with Python's defaults:
//!
//! - `crash`: `abort()` (SIGABRT), as `os.abort()`;
//! - `slow`: every call into the context sleeps `delay_ms` first (`Delay`, which the
//!   dispatcher and the rebuild job consult);
//! - `leak`: a thread maps and fills `rate_mb_s` MiB/s of anonymous memory and keeps it; at
//!   `limit_mb` it SIGKILLs the process (`on_limit: "kill"`) or stops growing; unmapped when
//!   the fault stops;
//! - `hog`: a thread does arithmetic for `duty` of every `period_s`. It takes a CPU, and only
//!   that: there is no interpreter lock here for it to hold;
//! - `gc`: there is no garbage collector here; a thread churns the same number of small heap
//!   objects (`objects_per_s`), allocated and freed every `collect_every_s`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::log::{error, info, warning};
use crate::rpc::CONTEXT;

pub const ENV_DIR: &str = "ARCHLAB_FAULTS_DIR";
pub const ARMED_DIR: &str = "armed";
pub const POLL: Duration = Duration::from_secs(1);
const LEAK_TICK: Duration = Duration::from_millis(50);
const STOP_WAIT: Duration = Duration::from_secs(1);
const MIB: f64 = 1024.0 * 1024.0;
const MAX_SECONDS: f64 = 86_400.0;

/// SIGRTMIN+3, as `variants.faults.SIGNAL` (glibc's SIGRTMIN, which is Python's too).
pub fn signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

/// `DEFAULT_PARAMS[kind]`; None for a kind the catalogue does not have.
pub fn default_params(kind: &str) -> Option<Map<String, Value>> {
    let defaults = match kind {
        "crash" => json!({"mode": "kill"}),
        "leak" => json!({"rate_mb_s": 20.0, "limit_mb": 200.0, "on_limit": "kill"}),
        "hog" => json!({"duty": 0.8, "period_s": 0.1}),
        "gc" => json!({"objects_per_s": 200_000, "collect_every_s": 0.1}),
        "slow" => json!({"delay_ms": 100.0}),
        _ => return None,
    };
    match defaults {
        Value::Object(map) => Some(map),
        _ => unreachable!("the defaults are objects"),
    }
}

/// The delay a `slow` fault adds to every call; zero when none runs.
#[derive(Debug, Default)]
pub struct Delay(AtomicU64);

impl Delay {
    pub fn set(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(nanos, Ordering::Relaxed);
    }

    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// What the Python wrapper does before each call: sleep the current delay, if any.
    pub fn wait(&self) {
        let delay = self.get();
        if !delay.is_zero() {
            thread::sleep(delay);
        }
    }
}

/// One reading of `<dir>/recommendations.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub id: Value,
    pub kind: Value,
    pub params: Value,
    pub active: bool,
    pub pids: Value,
}

impl Spec {
    /// A JSON object, read as Python's `spec.get(...)` reads it: absent keys are null.
    pub fn parse(text: &str) -> Result<Spec, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {}", e))?;
        let mut map = match value {
            Value::Object(map) => map,
            other => return Err(format!("not a JSON object but {}", type_name(&other))),
        };
        let mut take = |key: &str| map.remove(key).unwrap_or(Value::Null);
        let (id, kind, params, active, pids) = (
            take("id"),
            take("kind"),
            take("params"),
            take("active"),
            take("pids"),
        );
        Ok(Spec {
            id,
            kind,
            params,
            active: truthy(&active),
            pids,
        })
    }

    /// `pids` empty (or absent): every process hosting the component; else only those listed.
    pub fn concerns(&self, pid: u32) -> Result<bool, String> {
        if !truthy(&self.pids) {
            return Ok(true);
        }
        match &self.pids {
            Value::Array(pids) => Ok(pids.iter().any(|p| match p {
                Value::Number(n) => n.as_f64() == Some(f64::from(pid)),
                _ => false,
            })),
            other => Err(format!("pids is {}, not a list", type_name(other))),
        }
    }

    /// What `(id, active)` changing means: a new fault, or the same one ending.
    pub fn key(&self) -> (Value, bool) {
        (self.id.clone(), self.active)
    }
}

/// Python's `bool()` of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A fault to start, its parameters read and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Crash,
    Slow {
        delay: Duration,
    },
    Leak {
        rate_mb_s: f64,
        limit_mb: f64,
        kill: bool,
    },
    Hog {
        duty: f64,
        period: Duration,
    },
    Gc {
        objects_per_s: i64,
        every: Duration,
    },
}

impl Fault {
    /// `{**DEFAULT_PARAMS[kind], **(params or {})}`, then the kind's values from it.
    pub fn from_spec(kind: &Value, params: &Value) -> Result<(Fault, Map<String, Value>), String> {
        let name = match kind {
            Value::String(s) => s.as_str(),
            other => {
                return Err(format!(
                    "the fault kind is {}, not a string",
                    type_name(other)
                ))
            }
        };
        let mut merged =
            default_params(name).ok_or_else(|| format!("unknown fault kind {:?}", name))?;
        match params {
            Value::Object(overlay) => {
                merged.extend(overlay.iter().map(|(k, v)| (k.clone(), v.clone())))
            }
            other if !truthy(other) => {}
            other => return Err(format!("params is {}, not an object", type_name(other))),
        }
        let p = &merged;
        let fault = match name {
            "crash" => Fault::Crash,
            "slow" => Fault::Slow {
                delay: seconds(number(p, "delay_ms")? / 1000.0),
            },
            "leak" => Fault::Leak {
                rate_mb_s: number(p, "rate_mb_s")?,
                limit_mb: number(p, "limit_mb")?,
                kill: p.get("on_limit") == Some(&Value::String("kill".into())),
            },
            "hog" => {
                let period = number(p, "period_s")?;
                if period <= 0.0 {
                    return Err(format!("period_s must be positive, not {}", period));
                }
                Fault::Hog {
                    duty: number(p, "duty")?.clamp(0.0, 1.0),
                    period: seconds(period),
                }
            }
            _ => Fault::Gc {
                objects_per_s: number(p, "objects_per_s")?.trunc() as i64,
                every: seconds(number(p, "collect_every_s")?),
            },
        };
        Ok((fault, merged))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Slow { .. } => "slow",
            Fault::Leak { .. } => "leak",
            Fault::Hog { .. } => "hog",
            Fault::Gc { .. } => "gc",
        }
    }
}

/// Python's `float(params[key])`: a number, a bool, or a string that reads as one; finite.
fn number(params: &Map<String, Value>, key: &str) -> Result<f64, String> {
    let value = params
        .get(key)
        .ok_or_else(|| format!("{} is missing", key))?;
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() => Ok(n),
        _ => Err(format!("{} is not a finite number: {}", key, value)),
    }
}

/// Seconds (finite) as a Duration: a negative wait is no wait, as `Event.wait` takes it; capped
/// at a day, which no fault of a run outlasts.
fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, MAX_SECONDS))
}

/// `threading.Event` for one running fault.
#[derive(Default)]
struct Stop {
    set: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    fn set(&self) {
        *self.set.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once stopped; else false after `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        while !*set {
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d <= now => return false,
                Some(d) => d - now,
                None => Duration::from_secs(3600),
            };
            set = self
                .wake
                .wait_timeout(set, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// One started fault; `slow` has no thread (the delay is the fault).
struct Running {
    kind: &'static str,
    id: Value,
    params: Value,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

/// Applies the fault file of the one component this process hosts.
pub struct Controller {
    folder: PathBuf,
    pid: u32,
    delay: Arc<Delay>,
    applied: Option<(Value, bool)>,
    running: Option<Running>,
    /// The last reason the file was ignored, so a bad file is logged once, not every second.
    problem: Option<String>,
}

/// Arms this process when `ARCHLAB_FAULTS_DIR` is set: declares it in `<dir>/armed/<pid>` and
/// starts the controller thread. Returns how to poke it (None: not armed).
pub fn arm(role: &str, delay: Arc<Delay>) -> io::Result<Option<Sender<()>>> {
    let folder = match std::env::var_os(ENV_DIR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => return Ok(None),
    };
    let pid = std::process::id();
    declare(&folder, pid, role)?;
    let (poke, pokes) = mpsc::channel();
    let mut controller = Controller {
        folder,
        pid,
        delay,
        applied: None,
        running: None,
        problem: None,
    };
    thread::Builder::new()
        .name("fault-controller".into())
        .spawn(move || controller.run(pokes))?;
    Ok(Some(poke))
}

/// `<folder>/armed/<pid>`: the role, then the components hosted, one a line; by rename.
fn declare(folder: &Path, pid: u32, role: &str) -> io::Result<()> {
    let armed = folder.join(ARMED_DIR);
    fs::create_dir_all(&armed)?;
    let tmp = armed.join(format!(".{}.tmp", pid));
    fs::write(&tmp, format!("{}\n{}\n", role, CONTEXT))?;
    fs::rename(&tmp, armed.join(pid.to_string()))
}

impl Controller {
    fn path(&self) -> PathBuf {
        self.folder.join(format!("{}.json", CONTEXT))
    }

    fn run(&mut self, pokes: Receiver<()>) {
        let mut connected = true;
        loop {
            if connected {
                match pokes.recv_timeout(POLL) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => connected = false,
                }
                while pokes.try_recv().is_ok() {} // several signals, one reading
            } else {
                thread::sleep(POLL);
            }
            self.poll();
        }
    }

    /// Reads the file and applies it; whatever is wrong with it is logged (once) and ignored.
    pub fn poll(&mut self) {
        let path = self.path();
        let outcome = match fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read it: {}", e)),
            Ok(text) => Spec::parse(&text).and_then(|spec| {
                spec.concerns(self.pid)
                    .map(|mine| if mine { Some(spec) } else { None })
            }),
        };
        match outcome {
            Ok(spec) => {
                self.problem = None;
                if let Some(spec) = spec {
                    self.apply(&spec);
                }
            }
            Err(problem) => {
                if self.problem.as_ref() != Some(&problem) {
                    warning!("ignoring the fault file {}: {}", path.display(), problem);
                    self.problem = Some(problem);
                }
            }
        }
    }

    /// As Python's `Controller.apply`: on a new (id, active), stop what runs, start what the
    /// file asks for when it is active.
    pub fn apply(&mut self, spec: &Spec) {
        let key = spec.key();
        if self.applied.as_ref() == Some(&key) {
            return;
        }
        self.applied = Some(key);
        self.stop();
        if !spec.active {
            return;
        }
        match Fault::from_spec(&spec.kind, &spec.params) {
            Ok((fault, params)) => self.start(&spec.id, fault, &Value::Object(params)),
            Err(e) => error!("fault {} not started: {}", spec.id, e),
        }
    }

    fn start(&mut self, id: &Value, fault: Fault, params: &Value) {
        let kind = fault.kind();
        info!("fault {} started: {} {}", id, kind, params);
        let stop = Arc::new(Stop::default());
        let body: Box<dyn FnOnce(&Stop) + Send> = match fault {
            Fault::Crash => {
                error!("crash fault: aborting (SIGABRT)");
                crate::log::flush();
                std::process::abort();
            }
            Fault::Slow { delay } => {
                self.delay.set(delay);
                self.running = Some(Running {
                    kind,
                    id: id.clone(),
                    params: params.clone(),
                    stop,
                    thread: None,
                });
                return;
            }
            Fault::Leak {
                rate_mb_s,
                limit_mb,
                kill,
            } => Box::new(move |stop: &Stop| leak(rate_mb_s, limit_mb, kill, stop)),
            Fault::Hog { duty, period } => Box::new(move |stop: &Stop| hog(duty, period, stop)),
            Fault::Gc {
                objects_per_s,
                every,
            } => Box::new(move |stop: &Stop| churn(objects_per_s, every, stop)),
        };
        let flag = Arc::clone(&stop);
        let spawned = thread::Builder::new()
            .name(format!("fault-{}", kind))
            .spawn(move || body(&flag));
        match spawned {
            Ok(thread) => {
                self.running = Some(Running {
                    kind,
                    id: id.clone(),
                    params: params.clone(),
                    stop,
                    thread: Some(thread),
                })
            }
            Err(e) => error!("fault {} not started: cannot start its thread: {}", id, e),
        }
    }

    /// Ends the running fault, if any (its thread ends within a period; waited up to 1 s).
    pub fn stop(&mut self) {
        self.delay.set(Duration::ZERO);
        let running = match self.running.take() {
            Some(running) => running,
            None => return,
        };
        running.stop.set();
        let mut ended = true;
        if let Some(thread) = &running.thread {
            let deadline = Instant::now() + STOP_WAIT;
            while !thread.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            ended = thread.is_finished();
        }
        let (id, kind, params) = (&running.id, running.kind, &running.params);
        if ended {
            info!("fault {} stopped: {} {}", id, kind, params);
        } else {
            warning!(
                "fault {} stopping: {} {} (its thread is still finishing)",
                id,
                kind,
                params
            );
        }
    }
}

/// Anonymous memory, every page written (so resident), unmapped when dropped: a leak that
/// really gives its memory back to the system when the fault ends.
struct Region {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Region {
    fn new(len: usize) -> io::Result<Region> {
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0xa5, len) };
        Ok(Region { ptr, len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

fn leak(rate_mb_s: f64, limit_mb: f64, kill: bool, stop: &Stop) {
    let mut kept: Vec<Region> = Vec::new();
    let mut kept_mb = 0.0;
    let mut said = false;
    let started = Instant::now();
    while !stop.wait(LEAK_TICK) {
        if kept_mb >= limit_mb {
            if kill {
                error!(
                    "leak fault: {:.0} MB kept, the limit: SIGKILL, as an OOM killer would",
                    kept_mb
                );
                crate::log::flush();
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
            if !said {
                info!(
                    "leak fault: {:.0} MB kept, the limit: no longer growing",
                    kept_mb
                );
                said = true;
            }
            continue;
        }
        // keep up with the set rate, whatever the allocations cost
        let mb = limit_mb.min(rate_mb_s * started.elapsed().as_secs_f64()) - kept_mb;
        let bytes = (mb * MIB) as usize;
        if bytes == 0 {
            continue;
        }
        match Region::new(bytes) {
            Ok(region) => {
                kept.push(region);
                kept_mb += mb;
                said = false;
            }
            Err(e) => {
                if !said {
                    error!("leak fault: cannot map {} more bytes: {}", bytes, e);
                    said = true;
                }
            }
        }
    }
    let total: usize = kept.iter().map(|r| r.len).sum();
    drop(kept);
    info!("leak fault: freed {:.1} MB", total as f64 / MIB);
}

/// Where the CPU work's result goes, so that the optimizer cannot drop the work.
static SINK: AtomicU64 = AtomicU64::new(0);

/// `std::hint::black_box` (Rust 1.66) for rustc 1.63: a value the optimizer cannot see into.
fn opaque(x: u64) -> u64 {
    let cell = x;
    unsafe { std::ptr::read_volatile(&cell) }
}

/// About 10 µs of integer arithmetic (xorshift rounds).
fn burn(seed: u64) -> u64 {
    let mut x = opaque(seed) | 1;
    for i in 0..4096u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(i);
    }
    opaque(x)
}

fn hog(duty: f64, period: Duration, stop: &Stop) {
    let busy = period.mul_f64(duty);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while !stop.is_set() {
        let start = Instant::now();
        while start.elapsed() < busy {
            x = burn(x);
        }
        SINK.store(x, Ordering::Relaxed);
        let rest = period.saturating_sub(start.elapsed());
        if !rest.is_zero() && stop.wait(rest) {
            break;
        }
    }
}

fn churn(objects_per_s: i64, every: Duration, stop: &Stop) {
    info!("gc fault: no garbage collector in this process; churning the same allocations without a collection");
    let per_round = ((objects_per_s as f64 * every.as_secs_f64()) as i64).max(1) as usize;
    while !stop.is_set() {
        let mut garbage: Vec<Box<[u64; 4]>> = Vec::new();
        for i in 0..per_round as u64 {
            garbage.push(Box::new([i, i ^ 1, i ^ 2, i ^ 3]));
        }
        let sum = garbage
            .iter()
            .fold(0u64, |acc, b| acc.wrapping_add(opaque(b[3])));
        SINK.store(sum, Ordering::Relaxed);
        drop(garbage);
        if stop.wait(every) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_harness_file() {
        let spec = Spec::parse(
            r#"{"id": 3, "kind": "hog", "params": {"duty": 0.5}, "active": true, "pids": [12, 34]}"#,
        )
        .unwrap();
        assert_eq!(spec.id, json!(3));
        assert_eq!(spec.kind, json!("hog"));
        assert!(spec.active);
        assert_eq!(spec.key(), (json!(3), true));
        assert_eq!(spec.concerns(34), Ok(true));
        assert_eq!(spec.concerns(35), Ok(false));
        // absent keys are None in Python: no pids means every process, no active is inactive
        let bare = Spec::parse(r#"{"kind": "slow"}"#).unwrap();
        assert_eq!(bare.concerns(1), Ok(true));
        assert!(!bare.active);
        assert_eq!(bare.key(), (Value::Null, false));
        assert_eq!(
            Spec::parse(r#"{"id": 1, "pids": []}"#).unwrap().concerns(7),
            Ok(true)
        );
        assert!(Spec::parse(r#"{"id": 1, "pids": 5}"#)
            .unwrap()
            .concerns(7)
            .is_err());
        assert!(Spec::parse("garbage{").is_err());
        assert!(Spec::parse("[1, 2]").is_err());
        assert!(Spec::parse("").is_err());
        assert!(Spec::parse(r#"{"active": 1}"#).unwrap().active);
        assert!(!Spec::parse(r#"{"active": 0}"#).unwrap().active);
    }

    #[test]
    fn defaults_are_pythons() {
        let none = Value::Null;
        let of = |kind: &str| Fault::from_spec(&json!(kind), &none).unwrap().0;
        assert_eq!(of("crash"), Fault::Crash);
        assert_eq!(
            of("slow"),
            Fault::Slow {
                delay: Duration::from_millis(100)
            }
        );
        assert_eq!(
            of("leak"),
            Fault::Leak {
                rate_mb_s: 20.0,
                limit_mb: 200.0,
                kill: true
            }
        );
        assert_eq!(
            of("hog"),
            Fault::Hog {
                duty: 0.8,
                period: Duration::from_millis(100)
            }
        );
        assert_eq!(
            of("gc"),
            Fault::Gc {
                objects_per_s: 200_000,
                every: Duration::from_millis(100)
            }
        );
        let (_, merged) = Fault::from_spec(&json!("leak"), &json!({})).unwrap();
        assert_eq!(
            Value::Object(merged),
            json!({"rate_mb_s": 20.0, "limit_mb": 200.0, "on_limit": "kill"})
        );
    }

    #[test]
    fn params_overlay_the_defaults() {
        let (fault, merged) =
            Fault::from_spec(&json!("leak"), &json!({"limit_mb": 50, "on_limit": "keep"})).unwrap();
        assert_eq!(
            fault,
            Fault::Leak {
                rate_mb_s: 20.0,
                limit_mb: 50.0,
                kill: false
            }
        );
        assert_eq!(merged["limit_mb"], json!(50));
        let (fault, _) =
            Fault::from_spec(&json!("hog"), &json!({"duty": 3, "period_s": "0.2"})).unwrap();
        assert_eq!(
            fault,
            Fault::Hog {
                duty: 1.0,
                period: Duration::from_millis(200)
            }
        );
        let (fault, _) = Fault::from_spec(&json!("slow"), &json!({"delay_ms": -5})).unwrap();
        assert_eq!(
            fault,
            Fault::Slow {
                delay: Duration::ZERO
            }
        );
        let (fault, _) = Fault::from_spec(&json!("gc"), &json!({"objects_per_s": 1000.9})).unwrap();
        assert_eq!(
            fault,
            Fault::Gc {
                objects_per_s: 1000,
                every: Duration::from_millis(100)
            }
        );
        assert!(Fault::from_spec(&json!("slow"), &json!({"delay_ms": "x"})).is_err());
        assert!(Fault::from_spec(&json!("slow"), &json!({"delay_ms": null})).is_err());
        assert!(Fault::from_spec(&json!("hog"), &json!({"period_s": 0})).is_err());
        assert!(Fault::from_spec(&json!("slow"), &json!([1])).is_err());
        assert!(Fault::from_spec(&json!("nope"), &Value::Null).is_err());
        assert!(Fault::from_spec(&json!(7), &Value::Null).is_err());
    }

    #[test]
    fn applies_on_a_new_id_or_activity_only() {
        let dir = std::env::temp_dir().join(format!("rs-faults-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let delay = Arc::new(Delay::default());
        let mut c = Controller {
            folder: dir.clone(),
            pid: 4242,
            delay: Arc::clone(&delay),
            applied: None,
            running: None,
            problem: None,
        };
        let write = |text: &str| fs::write(dir.join("recommendations.json"), text).unwrap();
        c.poll(); // no file: nothing
        assert_eq!(delay.get(), Duration::ZERO);
        write(
            r#"{"id": 1, "kind": "slow", "params": {"delay_ms": 30}, "active": true, "pids": []}"#,
        );
        c.poll();
        assert_eq!(delay.get(), Duration::from_millis(30));
        // the same (id, active) again is not applied again
        delay.set(Duration::from_millis(1));
        c.poll();
        assert_eq!(delay.get(), Duration::from_millis(1));
        write("not json");
        c.poll();
        assert!(c.problem.is_some());
        assert_eq!(delay.get(), Duration::from_millis(1));
        // another process's fault is not ours
        write(r#"{"id": 2, "kind": "slow", "active": true, "pids": [1]}"#);
        c.poll();
        assert_eq!(delay.get(), Duration::from_millis(1));
        write(r#"{"id": 1, "kind": "slow", "active": false, "pids": [4242]}"#);
        c.poll();
        assert_eq!(delay.get(), Duration::ZERO);
        assert!(c.running.is_none());
        // a churn starts its thread and stops it
        write(r#"{"id": 3, "kind": "gc", "params": {"objects_per_s": 1000}, "active": true}"#);
        c.poll();
        assert_eq!(c.running.as_ref().map(|r| r.kind), Some("gc"));
        write(r#"{"id": 3, "kind": "gc", "active": false}"#);
        c.poll();
        assert!(c.running.is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn declares_itself_armed() {
        let dir = std::env::temp_dir().join(format!("rs-armed-test-{}", std::process::id()));
        declare(&dir, 77, "recs").unwrap();
        let text = fs::read_to_string(dir.join("armed").join("77")).unwrap();
        assert_eq!(text, "recs\nrecommendations\n");
        assert!(!dir.join("armed").join(".77.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn regions_are_written() {
        let region = Region::new(3 * 4096 + 5).unwrap();
        let bytes = unsafe { std::slice::from_raw_parts(region.ptr.cast::<u8>(), region.len) };
        assert!(bytes.iter().all(|&b| b == 0xa5));
        assert_ne!(burn(1), burn(2));
    }
}
