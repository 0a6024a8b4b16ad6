//! The `llm-observability-proxy` binary as a child process for the proxy suites: started on
//! 127.0.0.1 (any port), its stderr echoed and collected, its JSONL file read back, killed and
//! its file removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;

/// The proxy binary, built by `cargo test` before the test (feature `proxy`).
pub const PROXY: &str = env!("CARGO_BIN_EXE_llm-observability-proxy");

/// A proxy process; its stderr is echoed and collected in `log`.
pub struct Proxy {
    pub child: Child,
    pub addr: String,
    pub jsonl: PathBuf,
    log: Arc<Mutex<String>>,
}

/// A fresh JSONL path in the temporary directory.
pub fn temp_jsonl() -> PathBuf {
    std::env::temp_dir().join(format!(
        "llm-obs-proxy-{}-{}.jsonl",
        std::process::id(),
        uuid::Uuid::new_v4()
    ))
}

impl Proxy {
    pub async fn start(upstream: &str, extra: &[&str]) -> Proxy {
        Proxy::start_command(Command::new(PROXY), upstream, temp_jsonl(), extra).await
    }

    pub async fn start_with_jsonl(upstream: &str, jsonl: PathBuf, extra: &[&str]) -> Proxy {
        Proxy::start_command(Command::new(PROXY), upstream, jsonl, extra).await
    }

    /// Starts the proxy through `command` (the proxy binary itself, or a shell that execs it)
    /// and waits for its `listening on ADDR` line.
    pub async fn start_command(
        mut command: Command,
        upstream: &str,
        jsonl: PathBuf,
        extra: &[&str],
    ) -> Proxy {
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--upstream", upstream, "--jsonl"])
            .arg(&jsonl)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("proxy starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let collected = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                eprintln!("proxy: {line}");
                let mut log = collected.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(
            tokio::process::ChildStdout::from_std(stdout).expect("async stdout"),
        )
        .lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("proxy announces its address")
            .expect("read stdout")
            .expect("a line");
        let addr = first
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_owned();
        Proxy {
            child,
            addr,
            jsonl,
            log,
        }
    }

    /// What the proxy wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (bounded) until stderr contains `text`.
    pub async fn wait_for_log(&self, text: &str) -> bool {
        for _ in 0..600 {
            if self.log().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.addr).await.expect("connect")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (after `terminate`) and returns whether it exited 0.
    pub async fn wait(&mut self) -> bool {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("proxy did not exit");
    }

    /// The JSONL file's lines, each one payload.
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.jsonl)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON payload"))
            .collect()
    }

    /// Waits (bounded) until the JSONL file holds `count` lines.
    pub async fn wait_for_lines(&self, count: usize) -> Vec<Value> {
        for _ in 0..200 {
            let lines = self.lines();
            if lines.len() >= count {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.lines()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.jsonl.starts_with(std::env::temp_dir()) {
            let _ = std::fs::remove_file(&self.jsonl);
        }
    }
}
