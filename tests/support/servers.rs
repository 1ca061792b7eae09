//! Loopback servers a test starts: [`ServerProcess`], any server process,
//! killed with its whole process group on drop; [`EsStandin`], the
//! Elasticsearch stand-in (tests/standins/es_standin.py: not Elasticsearch, a
//! stand-in for the failures a real server cannot be made to show on demand)
//! on a free 127.0.0.1 port.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::support::{free_port, repo_root, stderr, wait_for_port};

/// A server process started in its own process group, listening on `port`;
/// the group (the server and anything it started) is killed on drop.
pub struct ServerProcess {
    child: Child,
    /// The 127.0.0.1 port it listens on.
    pub port: u16,
}

impl ServerProcess {
    /// Starts `command` (stdin and stdout closed, stderr shown with the
    /// test's) and waits until something accepts connections on `port`.
    pub fn spawn(mut command: Command, port: u16, what: &str) -> ServerProcess {
        command.stderr(Stdio::inherit());
        ServerProcess::spawn_with(command, port, what)
    }

    fn spawn_with(mut command: Command, port: u16, what: &str) -> ServerProcess {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let server = ServerProcess { child, port };
        wait_for_port(port, what);
        server
    }

    /// [`ServerProcess::spawn`] with the server's stderr thrown away (a
    /// server that logs every request).
    pub fn spawn_quiet(mut command: Command, port: u16, what: &str) -> ServerProcess {
        command.stderr(Stdio::null());
        ServerProcess::spawn_with(command, port, what)
    }

    /// The process id (also its process group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The Elasticsearch stand-in, killed on drop.
pub struct EsStandin {
    server: ServerProcess,
    /// `http://127.0.0.1:PORT` (`https://` when started with `--tls-cert`).
    pub base: String,
}

impl EsStandin {
    /// The stand-in with es_standin.py's command-line arguments (`--repository
    /// NAME`, `--faults JSON`, `--user U --password P`, `--tls-cert ...`).
    pub fn start(args: &[&str]) -> EsStandin {
        let port = free_port();
        let mut command = Command::new("python3");
        command
            .arg(repo_root().join("tests/standins/es_standin.py"))
            .args(["--port", &port.to_string()])
            .args(args);
        let scheme = if args.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        let server = ServerProcess::spawn(command, port, "the Elasticsearch stand-in");
        EsStandin {
            server,
            base: format!("{scheme}://127.0.0.1:{port}"),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// A request to the stand-in's control API (`/_standin/...`) through
    /// Python's urllib; its JSON answer (`Null` when the answer is empty).
    pub fn control(&self, method: &str, path: &str) -> Value {
        let out = Command::new("python3")
            .args([
                "-c",
                "import ssl, sys, urllib.request\n\
                 r = urllib.request.Request(sys.argv[1], method=sys.argv[2])\n\
                 c = ssl._create_unverified_context()\n\
                 print(urllib.request.urlopen(r, context=c).read().decode())",
                &format!("{}{path}", self.base),
                method,
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "stand-in control {method} {path}: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Every request received since the start (or the last `DELETE
    /// /_standin/requests`), as the stand-in recorded it.
    pub fn requests(&self) -> Vec<Value> {
        self.control("GET", "/_standin/requests")["requests"]
            .as_array()
            .expect("the stand-in lists its requests")
            .clone()
    }

    /// (method, path, answered status) of every request received.
    pub fn calls(&self) -> Vec<(String, String, Value)> {
        calls_of(&self.control("GET", "/_standin/requests"))
    }
}

/// (method, path, answered status) of each request in an answer of the
/// stand-in's `GET /_standin/requests` (for tests that fetch it themselves,
/// asynchronously, while a step runs).
pub fn calls_of(answer: &Value) -> Vec<(String, String, Value)> {
    answer["requests"]
        .as_array()
        .expect("the stand-in lists its requests")
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
                r["status"].clone(),
            )
        })
        .collect()
}
