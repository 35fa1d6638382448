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
/// stops whatever it started, as `npx` and `uvx` do).
pub fn spawn(spec: &Server, base_dir: &Path) -> Result<Link, String> {
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
    if let Some(stdout) = stdout {
        let name = name.clone();
        tasks.push(
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
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
        match child.wait().await {
            Ok(status) => format!("exited ({status})"),
            Err(e) => format!("could not be waited for ({e})"),
        }
    });
    Ok(Link { outgoing, incoming, pid, ended, tasks })
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
pub async fn connect_sse(spec: &Server, http: &Http) -> Result<Link, String> {
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
    let mut buf = Vec::new();
    let endpoint = loop {
        let chunk = chunks.next().await.ok_or_else(|| format!("{shown} closed its stream before naming an endpoint"))?;
        buf.extend_from_slice(&chunk.map_err(|e| format!("reading {shown}: {e}"))?);
        if let Some(e) = mcp_filter::sse::take_events(&mut buf).into_iter().find(|e| e.kind.as_deref() == Some("endpoint")) {
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
        loop {
            for e in mcp_filter::sse::take_events(&mut buf) {
                if let (None | Some("message"), Some(data)) = (e.kind.as_deref(), e.data) {
                    if from_server.send(data).await.is_err() {
                        return "closed".to_string();
                    }
                }
            }
            match chunks.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(_)) => return "broke its stream".to_string(),
                None => return "closed its stream".to_string(),
            }
        }
    });
    let tasks = vec![poster.abort_handle(), reader.abort_handle()];
    let ended = Box::pin(async move { reader.await.unwrap_or_else(|_| "was stopped".to_string()) });
    Ok(Link { outgoing, incoming, pid: None, ended, tasks })
}
