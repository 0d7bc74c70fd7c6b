//! `workloads.shop.jobs.Periodic`: wait the interval, run the job, again; a failure is logged
//! and the job tried again at the next tick, so a transient error in orders never stops it.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::log::error;
use crate::rpc::panic_text;

pub struct Periodic {
    name: &'static str,
    stopping: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Periodic {
    pub fn start<F, T, E>(
        name: &'static str,
        interval: Duration,
        job: F,
    ) -> std::io::Result<Periodic>
    where
        F: Fn() -> Result<T, E> + Send + 'static,
        E: std::fmt::Display,
    {
        let stopping = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stopping);
        let thread = thread::Builder::new().name(name.into()).spawn(move || {
            while !wait(&flag, interval) {
                match panic::catch_unwind(AssertUnwindSafe(&job)) {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        error!("background job {} failed; retrying next tick: {}", name, e)
                    }
                    Err(p) => error!(
                        "background job {} panicked; retrying next tick: {}",
                        name,
                        panic_text(p.as_ref())
                    ),
                }
            }
        })?;
        Ok(Periodic {
            name,
            stopping,
            thread,
        })
    }

    /// Asks the job to stop and waits for a run in progress, up to `timeout`.
    pub fn stop(self, timeout: Duration) -> bool {
        let (flag, wake) = &*self.stopping;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        let deadline = Instant::now() + timeout;
        while !self.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let done = self.thread.is_finished();
        if !done {
            error!(
                "background job {} still running after {:?}",
                self.name, timeout
            );
        }
        done
    }
}

/// `Event.wait(interval)`: true once stopping was asked.
fn wait(stopping: &(Mutex<bool>, Condvar), interval: Duration) -> bool {
    let (flag, wake) = stopping;
    let deadline = Instant::now() + interval;
    let mut stop = flag.lock().unwrap_or_else(|e| e.into_inner());
    while !*stop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        stop = wake
            .wait_timeout(stop, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}
