//! The two kinds of connection the control plane holds for servers Envoy
//! cannot call directly: a child process's stdin/stdout, and a legacy
//! (2024-11-05) HTTP+SSE session. Either is a [`Link`]: messages out,
//! messages in, and a future that says why it ended.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use futures::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use mcp_filter::sse::{take_events, Event, Scan};

use crate::catalog::Server;
use crate::upstream::Http;

pub struct Link {
    /// One JSON-RPC message per item.
    pub outgoing: mpsc::Sender<String>,
    pub incoming: mpsc::Receiver<String>,
    /// The child's pid (and process group), for `stdio`.
    pub pid: Option<u32>,
    /// Resolves, with why, when the connection is over.
    pub ended: Pin<Box<dyn Future<Output = String> + Send>>,
    /// Tasks to stop with the link.
    pub tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // Whatever is left of the child's process group (a launcher's
        // children outlive it when it dies first) goes with the link.
        if let Some(pid) = self.pid {
            signal_group(pid, libc::SIGKILL);
        }
    }
}

/// What every child gets besides its catalog `env`: enough to find programs
/// and write files, and nothing of the gateway's own environment.
fn base_env(tmp: &Path) -> Vec<(String, String)> {
    let mut env = vec![("TMPDIR".to_string(), tmp.display().to_string())];
    for (key, fallback) in [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/tmp"), ("LANG", "C.UTF-8")] {
        env.push((key.to_string(), std::env::var(key).unwrap_or_else(|_| fallback.to_string())));
    }
    env
}

/// The program to run: a relative path (one with a `/`) is taken from the
/// catalog's directory; a bare name is looked up in `PATH`.
fn program(command: &str, base_dir: &Path) -> PathBuf {
    let p = Path::new(command);
    if p.is_relative() && command.contains('/') {
        base_dir.join(p)
    } else {
        p.to_path_buf()
    }
}

/// Starts a `stdio` server in its own process group (so that stopping it
/// stops whatever it started, as `npx` and `uvx` do). A line (a message)
/// longer than `max` bytes ends the link: it is never held whole.
pub fn spawn(spec: &Server, base_dir: &Path, max: usize) -> Result<Link, String> {
    let command = spec.command.as_deref().unwrap_or_default();
    let cwd = spec.cwd.as_deref().map_or_else(|| base_dir.to_path_buf(), |c| base_dir.join(c));
    let mut child = tokio::process::Command::new(program(command, base_dir))
        .args(&spec.args)
        .env_clear()
        .envs(base_env(&std::env::temp_dir()))
        .envs(&spec.env)
        .current_dir(&cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let pid = child.id();
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (outgoing, mut to_child) = mpsc::channel::<String>(64);
    let (from_child, incoming) = mpsc::channel::<String>(64);
    let name = spec.name.clone();
    let mut tasks = Vec::new();
    if let Some(mut stdin) = stdin {
        tasks.push(
            tokio::spawn(async move {
                while let Some(line) = to_child.recv().await {
                    let written = async {
                        stdin.write_all(line.as_bytes()).await?;
                        stdin.write_all(b"\n").await?;
                        stdin.flush().await
                    };
                    if written.await.is_err() {
                        return;
                    }
                }
            })
            .abort_handle(),
        );
    }
    let (why_tx, why_rx) = tokio::sync::oneshot::channel::<String>();
    if let Some(stdout) = stdout {
        let name = name.clone();
        tasks.push(
            tokio::spawn(async move {
                let mut reader = BufReader::new(stdout);
                loop {
                    let line = match next_line(&mut reader, max).await {
                        Ok(Some(line)) => line,
                        Ok(None) => return,
                        Err(why) => {
                            let _ = why_tx.send(why);
                            return;
                        }
                    };
                    if line.trim_start().starts_with('{') {
                        if from_child.send(line).await.is_err() {
                            return;
                        }
                    } else if !line.trim().is_empty() {
                        tracing::warn!(server = %name, line = %line, "not JSON-RPC on stdout; ignored");
                    }
                }
            })
            .abort_handle(),
        );
    }
    if let Some(stderr) = stderr {
        let name = name.clone();
        tasks.push(
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(server = %name, stderr = %line, "server stderr");
                }
            })
            .abort_handle(),
        );
    }
    let ended = Box::pin(async move {
        tokio::select! {
            status = child.wait() => match status {
                Ok(status) => format!("exited ({status})"),
                Err(e) => format!("could not be waited for ({e})"),
            },
            // Dropping the link kills the process group.
            Ok(why) = why_rx => why,
        }
    });
    Ok(Link { outgoing, incoming, pid, ended, tasks })
}

/// The next line of a child's stdout, without its end; `None` at the end.
/// A line longer than `max` bytes is an error, read no further.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await.map_err(|e| format!("its stdout broke ({e})"))?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned()));
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(buf.get(..take).unwrap_or_default());
        reader.consume(if done { take + 1 } else { take });
        if line.len() > max {
            return Err(format!("wrote a message longer than the gateway's limit of {max} bytes (gateway.max_upstream_event_bytes)"));
        }
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

/// Sends `signal` to the process group `pid` leads.
pub fn signal_group(pid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pid) else { return };
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// The server's headers from the catalog (its credentials).
fn header_map(spec: &Server) -> Result<reqwest::header::HeaderMap, String> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in &spec.headers.0 {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header name {name:?} is not valid"))?;
        let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| format!("the value of header {name} is not valid"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Opens a legacy SSE session: GET the stream, wait for its `endpoint`
/// event, then POST messages there while reading answers from the stream.
/// `http` is the client of the server's TLS setting ([`crate::upstream::Reach::own`]).
/// An event longer than `max` bytes ends the link.
pub async fn connect_sse(spec: &Server, http: &Http, max: usize) -> Result<Link, String> {
    let shown = spec.display_url();
    let response = http
        .client
        .get(&spec.url)
        .header("accept", "text/event-stream")
        .headers(header_map(spec)?)
        .send()
        .await
        .map_err(|e| http.failure(&e, &shown))?;
    if !response.status().is_success() {
        return Err(format!("{shown} answered HTTP {}", response.status()));
    }
    let mut chunks = response.bytes_stream();
    let mut events = Events { buf: Vec::new(), scan: Scan::default(), max };
    let endpoint = loop {
        let chunk = chunks.next().await.ok_or_else(|| format!("{shown} closed its stream before naming an endpoint"))?;
        let found = events.push(&chunk.map_err(|e| format!("reading {shown}: {e}"))?).map_err(|e| format!("{shown} {e}"))?;
        if let Some(e) = found.into_iter().find(|e| e.kind.as_deref() == Some("endpoint")) {
            break e.data.unwrap_or_default();
        }
    };
    let base = url::Url::parse(&spec.url).map_err(|e| format!("{shown}: {e}"))?;
    let post_to = base.join(endpoint.trim()).map_err(|e| format!("{shown} named a bad endpoint: {e}"))?;
    if post_to.origin() != base.origin() {
        return Err(format!("{shown} named an endpoint on another origin"));
    }
    let (outgoing, mut to_server) = mpsc::channel::<String>(64);
    let (from_server, incoming) = mpsc::channel::<String>(64);
    let name = spec.name.clone();
    let headers = header_map(spec)?;
    let poster = {
        let http = http.client.clone();
        let name = name.clone();
        tokio::spawn(async move {
            while let Some(message) = to_server.recv().await {
                let sent = http
                    .post(post_to.clone())
                    .header("content-type", "application/json")
                    .headers(headers.clone())
                    .body(message)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!(server = %name, status = %r.status(), "legacy SSE server refused a message"),
                    Err(e) => tracing::warn!(server = %name, error = %e, "cannot post to the legacy SSE server"),
                }
            }
        })
    };
    let reader = tokio::spawn(async move {
        let mut found: Vec<Event> = Vec::new();
        loop {
            for e in found.drain(..) {
                if let Some(data) = e.data {
                    if from_server.send(data).await.is_err() {
                        return "closed".to_string();
                    }
                }
            }
            match chunks.next().await {
                Some(Ok(chunk)) => match events.push(&chunk) {
                    Ok(more) => found = more.into_iter().filter(|e| matches!(e.kind.as_deref(), None | Some("message"))).collect(),
                    Err(why) => return why,
                },
                Some(Err(_)) => return "broke its stream".to_string(),
                None => return "closed its stream".to_string(),
            }
        }
    });
    let tasks = vec![poster.abort_handle(), reader.abort_handle()];
    let ended = Box::pin(async move { reader.await.unwrap_or_else(|_| "was stopped".to_string()) });
    Ok(Link { outgoing, incoming, pid: None, ended, tasks })
}

/// A legacy SSE stream's events as they come: each byte scanned once, and
/// no event held past `max` bytes.
struct Events {
    buf: Vec<u8>,
    scan: Scan,
    max: usize,
}

impl Events {
    /// The events `chunk` completed; an error once an event is too long.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        self.buf.extend_from_slice(chunk);
        let (cut, over) = self.scan.advance(&self.buf, self.max);
        if over.is_some() {
            return Err(format!("sent an event longer than the gateway's limit of {} bytes (gateway.max_upstream_event_bytes)", self.max));
        }
        let Some(cut) = cut else { return Ok(Vec::new()) };
        let mut done: Vec<u8> = self.buf.drain(..cut.min(self.buf.len())).collect();
        self.scan.consumed(cut);
        Ok(take_events(&mut done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_childs_lines_are_bounded() {
        let mut out: &[u8] = b"{\"a\":1}\r\nshort\n0123456789abcdef\nlast";
        assert_eq!(next_line(&mut out, 10).await, Ok(Some("{\"a\":1}".to_string())));
        assert_eq!(next_line(&mut out, 10).await, Ok(Some("short".to_string())));
        let err = next_line(&mut out, 10).await.unwrap_err();
        assert!(err.contains("longer than the gateway's limit of 10 bytes"), "{err}");
        let mut end: &[u8] = b"last";
        assert_eq!(next_line(&mut end, 10).await, Ok(Some("last".to_string())));
        assert_eq!(next_line(&mut end, 10).await, Ok(None));
    }

    #[test]
    fn a_legacy_streams_events_are_bounded() {
        let mut events = Events { buf: Vec::new(), scan: Scan::default(), max: 40 };
        assert!(events.push(b"event: endpoint\ndata: /m").unwrap().is_empty());
        let got = events.push(b"?s=1\n\ndata: {}\n\ndata: x").unwrap();
        assert_eq!(got.iter().map(|e| e.data.as_deref().unwrap_or_default()).collect::<Vec<_>>(), ["/m?s=1", "{}"]);
        let err = events.push(&[b'x'; 64]).unwrap_err();
        assert!(err.contains("limit of 40 bytes"), "{err}");
    }
}
