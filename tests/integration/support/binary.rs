//! The built `vane` binary, run as a user would run it, with JSON logs read back.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub struct Vane {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub debug: SocketAddr,
    /// The messages logged before vane was serving (the first load's, among others).
    pub startup: Vec<String>,
    child: Child,
    logs: mpsc::UnboundedReceiver<serde_json::Value>,
}

impl Vane {
    /// Starts `vane --manifests DIR` on ephemeral loopback ports and waits until it serves.
    pub async fn start(manifests: &Path) -> Vane {
        Self::start_with(&["--manifests".as_ref(), manifests.as_os_str()]).await
    }

    /// Starts `vane` with `source` (`--manifests DIR` or `--kubeconfig PATH` and friends) on
    /// ephemeral loopback ports, metrics and debug on listeners of their own (as the chart runs
    /// it), and waits until it serves.
    pub async fn start_with(source: &[&std::ffi::OsStr]) -> Vane {
        let own_listeners = [
            "--metrics-addr",
            "127.0.0.1:0",
            "--debug-addr",
            "127.0.0.1:0",
        ];
        Self::spawn(source, &own_listeners).await
    }

    /// Starts `vane --manifests DIR` with every admin endpoint on the admin listener (the
    /// default), and waits until it serves.
    pub async fn start_with_one_admin_listener(manifests: &Path) -> Vane {
        Self::spawn(&["--manifests".as_ref(), manifests.as_os_str()], &[]).await
    }

    async fn spawn(source: &[&std::ffi::OsStr], admin: &[&str]) -> Vane {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vane"))
            .args(source)
            .args(admin)
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--https-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--log-format",
                "json",
                // One worker: the single-threaded runtime, as `make bench` runs vane.
                "--workers",
                "1",
            ])
            .env("RUST_LOG", "info")
            // Tests stop vane often; a test of the delay sets it with the flag.
            .env("VANE_SHUTDOWN_DELAY", "0")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start vane");
        let stdout = child.stdout.take().unwrap();
        let (tx, mut logs) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str(&line) {
                    Ok(json) => {
                        let _ = tx.send(json);
                    }
                    Err(_) => eprintln!("vane: {line}"),
                }
            }
        });
        let mut startup = Vec::new();
        let serving = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line: serde_json::Value =
                    logs.recv().await.expect("vane exited before serving");
                if line["fields"]["message"] == "vane is serving" {
                    return line;
                }
                startup.extend(line["fields"]["message"].as_str().map(str::to_owned));
            }
        })
        .await
        .expect("vane did not start serving within 30 s");
        let field = |name: &str| serving["fields"][name].as_str().unwrap().parse().unwrap();
        Vane {
            http: field("http"),
            https: field("https"),
            admin: field("admin"),
            metrics: field("metrics"),
            debug: field("debug"),
            startup,
            child,
            logs,
        }
    }

    /// Waits for a log line whose message contains `text` and returns it.
    pub async fn wait_for_log(&mut self, text: &str, within: Duration) -> serde_json::Value {
        tokio::time::timeout(within, async {
            loop {
                let line = self.logs.recv().await.expect("vane exited");
                if line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
                {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no log line containing {text:?} within {within:?}"))
    }

    /// Waits for a log line whose message contains `text`, and returns it with the messages
    /// logged before it.
    pub async fn messages_until(
        &mut self,
        text: &str,
        within: Duration,
    ) -> (Vec<String>, serde_json::Value) {
        tokio::time::timeout(within, async {
            let mut before = Vec::new();
            loop {
                let line = self.logs.recv().await.expect("vane exited");
                let message = line["fields"]["message"].as_str().unwrap_or_default();
                if message.contains(text) {
                    return (before, line);
                }
                before.push(message.to_owned());
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no log line containing {text:?} within {within:?}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("vane is running")
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod, and waits (bounded) for the exit.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.send_sigterm();
        self.exited(within).await
    }

    pub fn send_sigterm(&self) {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("vane did not exit within {within:?} of SIGTERM"))
            .unwrap()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Peak resident memory (VmHWM) of the vane process, in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }
}

/// Writes `contents` to `path` atomically (write a hidden temporary file, then rename), the
/// way kubectl, ConfigMap mounts and careful editors replace files.
pub fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
