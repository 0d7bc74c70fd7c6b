//! The command line (`variants/native.py` builds it). Hand-parsed: `--name VALUE` or
//! `--name=VALUE`; a bad one is one line on stderr and exit status 2.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::log::Level;

pub const HELP: &str = "\
archlab-recommendations: the shop's recommendations context, native, interchangeable with the
Python engine (same wire protocols, same answers, same store).

Serve (exactly one):
  --socket PATH            serve IPC frames (msgpack) on this Unix socket
  --port N                 serve HTTP (POST /rpc/<method>, GET /healthz) on --host:N
  --host HOST              address for --port (default 127.0.0.1)

Call orders (at most one; without, a rebuild answers `unavailable`):
  --orders-socket PATH     orders over IPC
  --orders-url URL         orders over HTTP, http://host:port

Store and model:
  --state-dir DIR          the store is DIR/recommendations.db (required; it must exist)
  --rebuild-interval S     seconds between background rebuilds, a float; 0 = never (default 60)

Serving:
  --threads N              HTTP request threads (default 8)
  --call-timeout-ms N      deadline of a call to orders (default 5000)
  --connect-timeout-ms N   connect timeout to orders (default 500)

Supervision:
  --parent-pid PID         die with this parent (PR_SET_PDEATHSIG: SIGKILL over IPC, SIGTERM
                           over HTTP) and exit 1 if it is gone; checked once a second
  --ready-fd FD            write the byte R to FD and close it once the model is built and
                           the server listens
  --role NAME              telemetry role and log name (default recommendations)
  --log-level LEVEL        DEBUG, INFO, WARNING or ERROR (default INFO)
  -h, --help               this text

Signals: over IPC, SIGUSR2 stops gracefully (calls in flight finish, up to 10 s), SIGQUIT exits
at once with status 2, SIGTERM/SIGINT/SIGHUP are ignored (the supervisor orders the shutdown).
Over HTTP, SIGTERM and SIGUSR2 stop gracefully, SIGINT and SIGQUIT exit at once.
SIGRTMIN+3 makes an armed process re-read its fault file; it is ignored otherwise.

Environment:
  ARCHLAB_TELEMETRY_DIR    declare the role in DIR/roles/<pid> and DIR/no-collector/<pid>
  ARCHLAB_FAULTS_DIR       arm for the lab's faults: DIR/armed/<pid>, DIR/recommendations.json
";

#[derive(Debug, Clone, PartialEq)]
pub enum Serve {
    Socket(PathBuf),
    Port { host: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum OrdersAt {
    Socket(PathBuf),
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub serve: Serve,
    pub orders: Option<OrdersAt>,
    pub state_dir: PathBuf,
    /// None: never.
    pub rebuild_interval: Option<Duration>,
    pub threads: usize,
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    pub parent_pid: Option<i32>,
    pub ready_fd: Option<i32>,
    pub role: String,
    pub log_level: Level,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Options),
    Help,
}

pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    let mut socket = None;
    let mut port = None;
    let mut host = None;
    let mut orders_socket = None;
    let mut orders_url = None;
    let mut state_dir = None;
    let mut interval = 60.0;
    let mut threads = 8;
    let mut call_ms = 5000;
    let mut connect_ms = 500;
    let mut parent_pid = None;
    let mut ready_fd = None;
    let mut role = "recommendations".to_string();
    let mut log_level = Level::Info;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {:?} is not UTF-8", a))?;
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let known = [
            "--socket",
            "--port",
            "--host",
            "--orders-socket",
            "--orders-url",
            "--state-dir",
            "--rebuild-interval",
            "--threads",
            "--call-timeout-ms",
            "--connect-timeout-ms",
            "--parent-pid",
            "--ready-fd",
            "--role",
            "--log-level",
        ];
        if !known.contains(&name.as_str()) {
            return Err(format!("unknown option {}", arg));
        }
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| format!("{} needs a value", name))?,
        };
        match name.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--port" => port = Some(number::<u16>(&name, &value)?),
            "--host" => host = Some(value),
            "--orders-socket" => orders_socket = Some(PathBuf::from(value)),
            "--orders-url" => orders_url = Some(value),
            "--state-dir" => state_dir = Some(PathBuf::from(value)),
            "--rebuild-interval" => {
                interval = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite())
                    .ok_or_else(|| {
                        format!("--rebuild-interval: {:?} is not a number of seconds", value)
                    })?
            }
            "--threads" => threads = number::<usize>(&name, &value)?,
            "--call-timeout-ms" => call_ms = number::<u64>(&name, &value)?,
            "--connect-timeout-ms" => connect_ms = number::<u64>(&name, &value)?,
            "--parent-pid" => parent_pid = Some(number::<i32>(&name, &value)?),
            "--ready-fd" => ready_fd = Some(number::<i32>(&name, &value)?),
            "--role" => role = value,
            _ => {
                log_level = Level::parse(&value).ok_or_else(|| {
                    format!(
                        "--log-level: {:?} is not DEBUG, INFO, WARNING or ERROR",
                        value
                    )
                })?
            }
        }
    }

    let serve = match (socket, port) {
        (Some(path), None) => {
            if host.is_some() {
                return Err("--host goes with --port, not --socket".into());
            }
            Serve::Socket(path)
        }
        (None, Some(port)) => Serve::Port {
            host: host.unwrap_or_else(|| "127.0.0.1".into()),
            port,
        },
        (Some(_), Some(_)) => return Err("give --socket or --port, not both".into()),
        (None, None) => return Err("give --socket PATH (IPC) or --port N (HTTP)".into()),
    };
    let orders = match (orders_socket, orders_url) {
        (Some(_), Some(_)) => return Err("give --orders-socket or --orders-url, not both".into()),
        (Some(path), None) => Some(OrdersAt::Socket(path)),
        (None, Some(url)) => Some(OrdersAt::Url(url)),
        (None, None) => None,
    };
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if matches!(parent_pid, Some(p) if p <= 0) || matches!(ready_fd, Some(fd) if fd < 0) {
        return Err("--parent-pid must be positive and --ready-fd not negative".into());
    }
    if role.is_empty() {
        return Err("--role must not be empty".into());
    }
    Ok(Command::Run(Options {
        serve,
        orders,
        state_dir: state_dir.ok_or("--state-dir DIR is required")?,
        rebuild_interval: (interval > 0.0).then(|| Duration::from_secs_f64(interval)),
        threads,
        call_timeout: Duration::from_millis(call_ms),
        connect_timeout: Duration::from_millis(connect_ms),
        parent_pid,
        ready_fd,
        role,
        log_level,
    }))
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{}: {:?} is not a valid number", name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(OsString::from))? {
            Command::Run(o) => Ok(o),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn parses_the_native_argv() {
        let o = run(&[
            "--role",
            "recs",
            "--state-dir",
            "/s",
            "--rebuild-interval",
            "0.5",
            "--socket",
            "/s/r.sock",
            "--orders-socket=/s/o.sock",
            "--call-timeout-ms",
            "250",
            "--threads",
            "4",
            "--parent-pid",
            "12",
            "--ready-fd",
            "5",
        ])
        .unwrap();
        assert_eq!(o.serve, Serve::Socket("/s/r.sock".into()));
        assert_eq!(o.orders, Some(OrdersAt::Socket("/s/o.sock".into())));
        assert_eq!(o.rebuild_interval, Some(Duration::from_millis(500)));
        assert_eq!(o.call_timeout, Duration::from_millis(250));
        assert_eq!(
            (o.threads, o.parent_pid, o.ready_fd),
            (4, Some(12), Some(5))
        );
        assert_eq!(o.role, "recs");
        let http = run(&[
            "--port",
            "8101",
            "--state-dir",
            "/s",
            "--rebuild-interval",
            "0",
        ])
        .unwrap();
        assert_eq!(
            http.serve,
            Serve::Port {
                host: "127.0.0.1".into(),
                port: 8101
            }
        );
        assert_eq!(http.rebuild_interval, None);
    }

    #[test]
    fn rejects_bad_command_lines() {
        assert!(run(&["--state-dir", "/s"]).is_err());
        assert!(run(&["--socket", "a", "--port", "1", "--state-dir", "/s"]).is_err());
        assert!(run(&["--socket", "a"]).is_err());
        assert!(run(&["--socket", "a", "--state-dir", "/s", "--bogus"]).is_err());
        assert!(run(&["--port", "x", "--state-dir", "/s"]).is_err());
        assert!(run(&[
            "--socket",
            "a",
            "--state-dir",
            "/s",
            "--rebuild-interval",
            "nan"
        ])
        .is_err());
        assert!(run(&["--socket", "a", "--state-dir"]).is_err());
        assert_eq!(parse(vec![OsString::from("--help")]), Ok(Command::Help));
    }
}
