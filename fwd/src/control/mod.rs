//! The running daemon's control socket: a unix stream socket (mode 0600) that
//! answers one JSON request per connection (`{"cmd":"stats"}`, `{"cmd":"reload"}`,
//! …) with one JSON reply. `fwd stats`, `fwd rules` and `fwd reload` are its clients.

pub mod metrics;

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Stats,
    Rules,
    Reload,
    /// The connection table; `count_only` leaves the flow listing out (a table of
    /// millions is counted in the worker without building a line per flow).
    Conntrack {
        #[serde(default)]
        count_only: bool,
    },
}

/// The reply: `{"ok":true,"data":…}` or `{"ok":false,"error":"…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok(data: Value) -> Self {
        Reply {
            ok: true,
            data: Some(data),
            error: None,
        }
    }
    pub fn err(e: impl Into<String>) -> Self {
        Reply {
            ok: false,
            data: None,
            error: Some(e.into()),
        }
    }
}

/// What answers requests: implemented by the daemon.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Reply;
}

/// Binds the control socket at `path`: refuses if another fwd answers there,
/// replaces a stale socket file, and makes it mode 0600 (root only).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another fwd answers on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves requests on `listener` until `stop`, then removes the socket file.
pub fn spawn_server(
    listener: UnixListener,
    path: PathBuf,
    handler: Arc<dyn Handler>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("fwd-control".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = serve_one(stream, handler.as_ref()) {
                            tracing::debug!("control connection: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => {
                        tracing::warn!("control socket: {e}");
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            let _ = std::fs::remove_file(&path);
        })
}

fn serve_one(stream: UnixStream, handler: &dyn Handler) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream).take_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => handler.handle(req),
        Err(e) => Reply::err(format!("bad request: {e}")),
    };
    let mut w = &stream;
    serde_json::to_writer(&mut w, &reply)?;
    w.write_all(b"\n")
}

trait TakeLine {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    /// Reads one line of at most 64 KiB.
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        self.take(64 * 1024).read_line(out)
    }
}

/// Sends one request to the daemon at `path` and returns its reply.
pub fn request(path: &Path, req: &Request) -> Result<Reply, String> {
    let stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach fwd at {}: {e} (is `fwd run` running with this control socket?)",
            path.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut w = &stream;
    serde_json::to_writer(&mut w, req).map_err(|e| e.to_string())?;
    w.write_all(b"\n").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .take_line(&mut line)
        .map_err(|e| format!("reading the reply: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("bad reply from fwd: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, req: Request) -> Reply {
            match req {
                Request::Stats => Reply::ok(serde_json::json!({"rx": 7})),
                _ => Reply::err("nope"),
            }
        }
    }

    #[test]
    fn request_reply_round_trip_and_socket_is_0600() {
        let dir = std::env::temp_dir().join(format!("fwd-ctl-test-{}", std::process::id()));
        let path = dir.join("ctl.sock");
        let stop = Arc::new(AtomicBool::new(false));
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second daemon on the same path is refused while the first answers.
        let h = spawn_server(l, path.clone(), Arc::new(Echo), stop.clone()).unwrap();
        assert!(bind(&path).is_err());
        let r = request(&path, &Request::Stats).unwrap();
        assert!(r.ok);
        assert_eq!(r.data.unwrap()["rx"], 7);
        let r = request(&path, &Request::Reload).unwrap();
        assert_eq!(r.error.as_deref(), Some("nope"));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        assert!(!path.exists(), "socket file removed at stop");
        let _ = std::fs::remove_dir_all(dir);
    }
}
