//! Process plumbing shared with the Python supervisors (`variants/lifecycle.py`, the family's
//! auxiliaries): dying with the parent, the readiness byte, and signals taken synchronously by
//! the main thread.

use std::io;
use std::time::Duration;

use libc::c_int;

/// `die_with_parent`: the kernel sends `sig` when the parent dies; if it already has (before
/// prctl took effect), exit at once.
pub fn die_with_parent(parent_pid: i32, sig: c_int) {
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0);
    }
    if !parent_alive(parent_pid) {
        unsafe { libc::_exit(1) };
    }
}

pub fn parent_alive(parent_pid: i32) -> bool {
    unsafe { libc::getppid() == parent_pid }
}

/// Writes the single byte `R` to the supervisor's readiness pipe and closes it.
pub fn announce_ready(fd: c_int) -> io::Result<()> {
    let written = unsafe { libc::write(fd, b"R".as_ptr().cast(), 1) };
    let result = if written == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    unsafe {
        libc::close(fd);
    }
    result
}

/// Signals blocked in every thread (so before the first thread starts) and taken by
/// `wait` in the main thread: no thread ever runs a signal's default action by surprise.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    pub fn block(signals: &[c_int]) -> io::Result<Signals> {
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &sig in signals {
                libc::sigaddset(&mut set, sig);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(Signals { set })
        }
    }

    /// The next pending signal and its sender's pid, or None after `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<(c_int, i32)> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigtimedwait(&self.set, &mut info, &ts);
            if sig < 0 {
                None
            } else {
                Some((sig, info.si_pid()))
            }
        }
    }
}

pub fn signal_name(sig: c_int) -> String {
    match sig {
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGUSR1 => "SIGUSR1".into(),
        libc::SIGUSR2 => "SIGUSR2".into(),
        other if other >= libc::SIGRTMIN() && other <= libc::SIGRTMAX() => {
            format!("SIGRTMIN+{}", other - libc::SIGRTMIN())
        }
        other => format!("signal {}", other),
    }
}
