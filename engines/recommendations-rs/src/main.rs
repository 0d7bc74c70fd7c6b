//! `archlab-recommendations`: the shop's recommendations context as a native process, a
//! drop-in for the Python engine in any placement (an IPC auxiliary of the process family or
//! an HTTP service), with the same answers and the same store file.

mod cli;
mod engine;
mod faults;
mod http;
mod ipc;
mod jobs;
mod lifecycle;
mod log;
mod model;
mod orders;
mod rpc;
mod store;
mod telemetry;

use std::path::Path;
use std::process;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{Command, Options, OrdersAt, Serve};
use crate::engine::Recommendations;
use crate::faults::Delay;
use crate::http::{HttpClient, HttpServer};
use crate::ipc::{IpcServer, UdsClient};
use crate::jobs::Periodic;
use crate::lifecycle::{signal_name, Signals};
use crate::log::{debug, error, info, warning};
use crate::orders::{HttpOrders, IpcOrders, Orders};
use crate::rpc::{Dispatcher, Format};

const STOP_GRACE: Duration = Duration::from_secs(10);
const JOB_STOP: Duration = Duration::from_secs(5);
const EXIT_QUICKDIE: i32 = 2;
const TICK: Duration = Duration::from_secs(1);

fn main() {
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => print!("{}", cli::HELP),
        Ok(Command::Run(options)) => process::exit(run(options)),
        Err(message) => {
            eprintln!("archlab-recommendations: {} (see --help)", message);
            process::exit(2);
        }
    }
}

enum Server {
    Ipc(IpcServer),
    Http(HttpServer),
}

impl Server {
    fn stop(&mut self, grace: Duration) -> bool {
        match self {
            Server::Ipc(s) => s.stop(grace),
            Server::Http(s) => s.stop(grace),
        }
    }
}

fn run(o: Options) -> i32 {
    log::init(&o.role, o.log_level);
    let ipc_mode = matches!(o.serve, Serve::Socket(_));
    // Before the first thread starts, so that every thread inherits the mask. The fault
    // signal too, armed or not: its default action would kill the process.
    let fault_signal = faults::signal();
    let signals = match Signals::block(&[
        libc::SIGUSR2,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        fault_signal,
    ]) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot block signals: {}", e);
            return 1;
        }
    };
    if let Some(parent) = o.parent_pid {
        let sig = if ipc_mode {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        lifecycle::die_with_parent(parent, sig);
    }
    std::panic::set_hook(Box::new(|info| error!("{}", info)));
    if let Err(e) = telemetry::declare(&o.role) {
        warning!("cannot declare the telemetry role: {}", e);
    }
    // Armed before readiness, as `faults.arm` runs where the Python process builds its contexts.
    let delay = Arc::new(Delay::default());
    let poke_faults = match faults::arm(&o.role, Arc::clone(&delay)) {
        Ok(poke) => poke,
        Err(e) => {
            error!("cannot arm the fault controller: {}", e);
            return 1;
        }
    };
    let serving = match &o.serve {
        Serve::Socket(path) => format!("IPC on {}", path.display()),
        Serve::Port { host, port } => format!("HTTP on {}:{}", host, port),
    };
    let orders_at = match &o.orders {
        Some(OrdersAt::Socket(path)) => format!("orders over IPC at {}", path.display()),
        Some(OrdersAt::Url(url)) => format!("orders over HTTP at {}", url),
        None => "no orders endpoint".to_string(),
    };
    let path = o.state_dir.join("recommendations.db");
    info!(
        "starting: {}, store {}, {}, rebuild {}",
        serving,
        path.display(),
        orders_at,
        o.rebuild_interval
            .map(|d| format!("every {} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never".to_string())
    );

    let engine = match open(&o, &path) {
        Ok(engine) => Arc::new(engine),
        Err(e) => {
            error!("{}", e);
            return 1;
        }
    };
    let stats = engine.stats();
    info!(
        "model built: {} baskets, {} products, {} pairs in {:.3} s",
        stats.baskets, stats.products, stats.pairs, stats.build_seconds
    );
    let dispatcher = Arc::new(Dispatcher::new(Arc::clone(&engine), Arc::clone(&delay)));

    let mut server = match &o.serve {
        Serve::Socket(socket) => {
            let handler_dispatcher = Arc::clone(&dispatcher);
            let handler: ipc::Handler = Arc::new(move |method: &str, args: &[u8]| {
                let answer = handler_dispatcher.handle(Format::Msgpack, method, args);
                (answer.ok, answer.body)
            });
            IpcServer::bind(socket, handler).map(Server::Ipc)
        }
        Serve::Port { host, port } => {
            HttpServer::bind(host, *port, o.threads, Arc::clone(&dispatcher)).map(Server::Http)
        }
    };
    let server = match server.as_mut() {
        Ok(server) => server,
        Err(e) => {
            error!("cannot serve {}: {}", serving, e);
            return 1;
        }
    };
    // After the server, as `hosted.start_jobs()`: the first run is one interval away anyway.
    let job = match o.rebuild_interval {
        Some(interval) => {
            let engine = Arc::clone(&engine);
            // The Python job calls the served (wrapped) context: a `slow` fault delays it too.
            let delay = Arc::clone(&delay);
            match Periodic::start("recommendations-rebuild", interval, move || {
                delay.wait();
                engine.rebuild()
            }) {
                Ok(job) => Some(job),
                Err(e) => {
                    error!("cannot start the rebuild job: {}", e);
                    return 1;
                }
            }
        }
        None => None,
    };

    if let Some(fd) = o.ready_fd {
        if let Err(e) = lifecycle::announce_ready(fd) {
            warning!("cannot announce readiness on fd {}: {}", fd, e);
        }
    }
    info!("ready: {}", serving);

    loop {
        let got = signals.wait(TICK);
        if let Some(parent) = o.parent_pid {
            if !lifecycle::parent_alive(parent) {
                error!("the parent (pid {}) is gone; exiting", parent);
                return 1;
            }
        }
        let (sig, sender) = match got {
            Some(got) => got,
            None => continue,
        };
        match sig {
            libc::SIGQUIT if ipc_mode => unsafe { libc::_exit(EXIT_QUICKDIE) },
            libc::SIGUSR2 => break,
            libc::SIGTERM if !ipc_mode => break,
            libc::SIGINT | libc::SIGQUIT if !ipc_mode => {
                info!("{} from pid {}: exiting now", signal_name(sig), sender);
                unsafe { libc::_exit(0) }
            }
            s if s == fault_signal => match &poke_faults {
                Some(poke) => {
                    debug!("{} from pid {}: fault files", signal_name(sig), sender);
                    let _ = poke.send(());
                }
                None => debug!(
                    "ignoring {} from pid {}: not armed ({} is not set)",
                    signal_name(sig),
                    sender,
                    faults::ENV_DIR
                ),
            },
            _ => debug!("ignoring {} from pid {}", signal_name(sig), sender),
        }
    }

    info!("stopping ({}): {}", serving, in_flight(server));
    if !server.stop(STOP_GRACE) {
        warning!("calls still running after {} s", STOP_GRACE.as_secs());
    }
    if let Some(job) = job {
        job.stop(JOB_STOP);
    }
    info!("stopped");
    0
}

fn in_flight(server: &Server) -> String {
    match server {
        Server::Ipc(s) => format!("{} call(s) in flight", s.inflight()),
        Server::Http(_) => "requests in progress finish first".to_string(),
    }
}

fn open(o: &Options, path: &Path) -> Result<Recommendations, String> {
    if !path.is_file() {
        return Err(format!(
            "{} is missing: the state folder must hold the context's database (copied from the dataset)",
            path.display()
        ));
    }
    let orders: Option<Box<dyn Orders>> = match &o.orders {
        Some(OrdersAt::Socket(socket)) => Some(Box::new(IpcOrders(UdsClient::new(
            socket,
            o.connect_timeout,
            o.call_timeout,
        )))),
        Some(OrdersAt::Url(url)) => Some(Box::new(HttpOrders(HttpClient::new(
            "orders",
            url,
            o.connect_timeout,
            o.call_timeout,
        )?))),
        None => None,
    };
    Recommendations::open(path, orders)
}
