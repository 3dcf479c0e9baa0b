//! Prometheus text exposition (format 0.0.4) on an opt-in local TCP listener.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

/// Renders the current metrics as Prometheus text.
pub trait Exporter: Send + Sync + 'static {
    fn render(&self) -> String;
}

/// Serves `GET /metrics` on `addr` until `stop`.
pub fn spawn(
    addr: SocketAddr,
    exporter: Arc<dyn Exporter>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    thread::Builder::new().name("fwd-metrics".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 2048];
                    let n = s.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let (status, body) = if req.starts_with("GET /metrics") || req.starts_with("GET / ") {
                        ("200 OK", exporter.render())
                    } else {
                        ("404 Not Found", "only /metrics is served here\n".to_string())
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    })
}

/// Writes one metric family: HELP, TYPE and its samples.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// A label value escaped as the exposition format wants.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_renders_help_type_and_labels() {
        let mut s = String::new();
        family(
            &mut s,
            "fwd_rx_packets_total",
            "counter",
            "Frames received.",
            &[(format!("interface=\"{}\"", label("a\"b")), 3.0)],
        );
        assert_eq!(s, "# HELP fwd_rx_packets_total Frames received.\n# TYPE fwd_rx_packets_total counter\nfwd_rx_packets_total{interface=\"a\\\"b\"} 3\n");
    }
}
