//! The one helper integration tests build their network with: a testbed (three
//! namespaces from scripts/testbed.sh, unique per test, removed on drop even when
//! the test panics) and a running fwd daemon in its middle namespace.
#![allow(dead_code)]

pub mod kernel;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether this process may build namespaces and attach XDP (root). Tests that
/// need it say so and pass without doing anything otherwise.
pub fn privileged() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !common::privileged() {
            eprintln!("skipped: needs root (network namespaces, XDP)");
            return;
        }
    };
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The three-namespace testbed: `{prefix}-gen`, `{prefix}-fwd`, `{prefix}-sink`.
pub struct Testbed {
    pub prefix: String,
}

impl Testbed {
    pub fn up() -> Self {
        Self::with_queues(1)
    }

    /// A testbed whose veths have `queues` RX/TX queues each.
    pub fn with_queues(queues: u32) -> Self {
        let prefix = format!(
            "t{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(repo_root().join("scripts/testbed.sh"))
            .args(["up", &prefix])
            .env("QUEUES", queues.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "testbed up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Testbed { prefix }
    }

    pub fn gen(&self) -> String {
        format!("{}-gen", self.prefix)
    }
    pub fn fwd(&self) -> String {
        format!("{}-fwd", self.prefix)
    }
    pub fn sink(&self) -> String {
        format!("{}-sink", self.prefix)
    }
    /// fwd's port towards the generator.
    pub fn port_a(&self) -> String {
        format!("{}-a", self.prefix)
    }
    /// fwd's port towards the sink.
    pub fn port_b(&self) -> String {
        format!("{}-b", self.prefix)
    }

    /// configs/router.toml with this testbed's interface names and its own
    /// control socket.
    pub fn router_config(&self) -> String {
        self.shipped_config("router.toml")
    }

    /// A config from configs/ as shipped, with this testbed's interface names and
    /// its own control socket.
    pub fn shipped_config(&self, name: &str) -> String {
        std::fs::read_to_string(repo_root().join("configs").join(name))
            .unwrap()
            .replace("\"fwd-a\"", &format!("\"{}\"", self.port_a()))
            .replace("\"fwd-b\"", &format!("\"{}\"", self.port_b()))
            .replace(
                "\"/run/fwd/fwd.sock\"",
                &format!("\"{}\"", self.control_socket().display()),
            )
    }

    pub fn control_socket(&self) -> PathBuf {
        std::env::temp_dir().join(format!("fwd-{}.sock", self.prefix))
    }

    /// Runs `fwd ARGS --socket <this testbed's>` (stats, reload, rules) and returns its output.
    pub fn fwd_cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_fwd"))
            .args(args)
            .arg("--socket")
            .arg(self.control_socket())
            .output()
            .unwrap()
    }

    /// Runs a command in a namespace and returns its output.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn spawn(&self, ns: &str, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// One ping from the generator to the sink: resolves the path (and asserts it works).
    pub fn ping_sink(&self) {
        let o = self.exec(&self.gen(), &["ping", "-c", "1", "-W", "3", "198.19.0.2"]);
        assert!(
            o.status.success(),
            "ping: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }

    /// Starts tools/udp_probe.py's sniffer on the sink's wire for `count` probes to
    /// UDP `port`, giving up after `secs`; read it with [`sniffed`].
    pub fn sniff(&self, port: u16, count: u32, secs: u32) -> Child {
        let c = self.spawn(
            &self.sink(),
            &[
                "python3",
                &tool("udp_probe.py"),
                "sniff",
                &format!("{}-s", self.prefix),
                &port.to_string(),
                &count.to_string(),
                &secs.to_string(),
            ],
        );
        // Let the sniffer bind before anything is sent.
        thread::sleep(Duration::from_millis(300));
        c
    }

    /// The udp_probe.py sender's argument list (for `exec` or `spawn` from the generator).
    pub fn probe_args(
        dst: &str,
        port: u16,
        count: u32,
        ttl: u8,
        flows: u32,
        gap_us: u32,
    ) -> Vec<String> {
        [
            "python3",
            &tool("udp_probe.py"),
            "send",
            dst,
            &port.to_string(),
            &count.to_string(),
            &ttl.to_string(),
            &flows.to_string(),
            &gap_us.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Sends `count` numbered UDP probes (TTL 64) from the generator and waits for it.
    pub fn send_probes(&self, dst: &str, port: u16, count: u32, flows: u32, gap_us: u32) {
        self.send_probes_ttl(dst, port, count, 64, flows, gap_us)
    }

    pub fn send_probes_ttl(
        &self,
        dst: &str,
        port: u16,
        count: u32,
        ttl: u8,
        flows: u32,
        gap_us: u32,
    ) {
        let args = Self::probe_args(dst, port, count, ttl, flows, gap_us);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.exec(&self.gen(), &args);
        assert!(
            o.status.success(),
            "udp_probe send: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `fwd stats --json` of the daemon in this testbed.
    pub fn stats(&self) -> serde_json::Value {
        json_stdout(&self.fwd_cli(&["stats", "--json"]))
    }

    /// Whether any interface of the fwd namespace still has an XDP program.
    pub fn xdp_attached(&self) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.fwd(), "link", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/testbed.sh"))
            .args(["down", &self.prefix])
            .output();
    }
}

/// A running `fwd run` in the testbed's middle namespace.
pub struct Fwd {
    child: Option<Child>,
    pub stats_file: PathBuf,
    pub config_file: PathBuf,
}

pub struct Stopped {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Fwd {
    pub fn start(tb: &Testbed, config: &str) -> Self {
        let dir = std::env::temp_dir();
        let config_file = dir.join(format!("fwd-{}.toml", tb.prefix));
        let stats_file = dir.join(format!("fwd-{}.stats.json", tb.prefix));
        let _ = std::fs::remove_file(&stats_file);
        std::fs::write(&config_file, config).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &tb.fwd(),
                env!("CARGO_BIN_EXE_fwd"),
                "run",
                "-c",
            ])
            .arg(&config_file)
            .arg("--stats-file")
            .arg(&stats_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut fwd = Fwd {
            child: Some(child),
            stats_file,
            config_file,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fwd.stats_file.exists() {
            if let Some(status) = fwd.child.as_mut().unwrap().try_wait().unwrap() {
                let s = fwd.stop_inner();
                panic!("fwd exited at start ({status}): {}{}", s.stdout, s.stderr);
            }
            assert!(Instant::now() < deadline, "fwd did not start within 10 s");
            thread::sleep(Duration::from_millis(50));
        }
        fwd
    }

    /// The latest counters fwd wrote.
    pub fn stats(&self) -> serde_json::Value {
        // Let the worker publish and the writer write (every 200 ms).
        thread::sleep(Duration::from_millis(450));
        serde_json::from_str(&std::fs::read_to_string(&self.stats_file).unwrap()).unwrap()
    }

    pub fn drop_count(&self, reason: &str) -> u64 {
        self.stats()["drops"][reason].as_u64().unwrap()
    }

    /// SIGINT, then wait (at most 10 s) for a clean exit.
    pub fn stop(mut self) -> Stopped {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Stopped {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        Stopped {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the daemon.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    /// The daemon's pid (`ip netns exec` execs it, so the child is fwd itself).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the daemon is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// A line of /proc/PID/status in KiB (VmRSS, VmHWM).
    pub fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap()
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/{}/status", self.pid()))
    }

    /// SIGKILL: what a crash leaves behind.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Fwd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop_inner();
        }
        let _ = std::fs::remove_file(&self.stats_file);
        let _ = std::fs::remove_file(&self.config_file);
    }
}

/// What a sniffer from [`Testbed::sniff`] saw (JSON: received, ttls, checksums, seqs_missing).
pub fn sniffed(c: Child) -> serde_json::Value {
    json_stdout(&c.wait_with_output().unwrap())
}

/// A command's stdout parsed as JSON (the output and stderr shown if it is not).
pub fn json_stdout(o: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&o.stderr)))
}

pub fn tool(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
        .to_string_lossy()
        .into_owned()
}
