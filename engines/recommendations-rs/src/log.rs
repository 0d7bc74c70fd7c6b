//! Log lines on stderr in the Python family's format
//! (`%(asctime)s [%(process)d] <role> %(levelname)s %(name)s %(message)s`), so one reader
//! handles both engines' logs.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

pub const NAME: &str = "archlab.recommendations-rs";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
}

impl Level {
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_uppercase().as_str() {
            "DEBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARNING" | "WARN" => Some(Level::Warning),
            "ERROR" => Some(Level::Error),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

static THRESHOLD: AtomicU8 = AtomicU8::new(Level::Info as u8);
static ROLE: Mutex<String> = Mutex::new(String::new());

pub fn init(role: &str, level: Level) {
    *ROLE.lock().unwrap_or_else(|e| e.into_inner()) = role.to_string();
    THRESHOLD.store(level as u8, Ordering::Relaxed);
}

pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if (level as u8) < THRESHOLD.load(Ordering::Relaxed) {
        return;
    }
    let role = ROLE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let line = format!(
        "{} [{}] {} {} {} {}\n",
        asctime(),
        std::process::id(),
        role,
        level.name(),
        NAME,
        args
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Stderr is unbuffered; kept so that an `_exit` path reads as deliberate.
pub fn flush() {
    let _ = std::io::stderr().flush();
}

/// Local time as Python's logging prints it: `2026-12-01 18:00:00,123`.
fn asctime() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        libc::localtime_r(&ts.tv_sec, &mut tm);
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        ts.tv_nsec / 1_000_000
    )
}

macro_rules! debug { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } }
macro_rules! info { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } }
macro_rules! warning { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($t)*)) } }
macro_rules! error { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } }

pub(crate) use {debug, error, info, warning};
