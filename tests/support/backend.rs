//! Real backends on loopback for the sink tests: `scripts/backends/NAME.sh` installs the backend
//! (cached) and serves it on `127.0.0.1:PORT`; this starts it, waits for its `READY` line and stops
//! its whole process group when dropped — also when the test fails. A backend that cannot be
//! installed or started fails the test loudly, with the end of its log; nothing is skipped.
//!
//! A backend shared by the tests of one binary can live in a `static` (`OnceLock`): statics are
//! never dropped, so the script stops the server itself once the test process is gone
//! (`LLM_OBS_TEST_PID`).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running backend server; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Backend {
    name: String,
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Its state directory (removed on drop).
    pub workdir: PathBuf,
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("scripts/backends/{name}.sh"))
}

/// Runs `scripts/backends/NAME.sh install`; panics with its output when it fails.
pub fn install(name: &str) {
    let output = Command::new("bash")
        .arg(script(name))
        .arg("install")
        .output()
        .unwrap_or_else(|error| panic!("cannot run the {name} install script: {error}"));
    assert!(
        output.status.success(),
        "installing backend {name} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("no free port on 127.0.0.1")
}

impl Backend {
    /// Installs and starts backend `name`, waiting up to `ready_within` for it to say `READY`.
    pub fn start(name: &str, ready_within: Duration) -> Backend {
        Self::start_with(name, ready_within, &[])
    }

    /// Like [`Backend::start`], with extra environment variables for the script.
    pub fn start_with(name: &str, ready_within: Duration, env: &[(&str, &str)]) -> Backend {
        install(name);
        let port = free_port();
        let workdir =
            std::env::temp_dir().join(format!("llm-obs-{name}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&workdir);
        std::fs::create_dir_all(&workdir).expect("create the backend's work directory");
        let log = std::fs::File::create(workdir.join("server.log")).expect("create the log");
        let mut child = Command::new("bash")
            .arg(script(name))
            .arg("serve")
            .arg(port.to_string())
            .arg(&workdir)
            .env("LLM_OBS_TEST_PID", std::process::id().to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start backend {name}: {error}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut said_ready = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !said_ready && line.trim() == "READY" {
                    said_ready = true;
                    let _ = ready_tx.send(());
                }
            }
        });
        let mut backend = Backend {
            name: name.to_owned(),
            child,
            port,
            workdir,
        };
        let deadline = Instant::now() + ready_within;
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(200)).is_ok() {
                return backend;
            }
            if let Ok(Some(status)) = backend.child.try_wait() {
                panic!(
                    "backend {name} exited ({status}) before it was ready:\n{}",
                    backend.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "backend {name} was not ready within {ready_within:?}:\n{}",
                    backend.log_tail()
                );
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last 60 lines the server wrote to its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.workdir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The backend's state directory.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("backend {} log (end):\n{}", self.name, self.log_tail());
        }
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}
