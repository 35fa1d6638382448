//! Servers Envoy cannot call directly: local processes speaking stdio, and
//! servers of the legacy (2024-11-05) HTTP+SSE transport. The control plane
//! runs or connects to each, supervises it, and serves it to Envoy as a
//! stateless Streamable HTTP endpoint at `/upstream/<name>/mcp` on its admin
//! listener; Envoy reaches that like any other upstream, through the
//! server's own cluster.
//!
//! One connection per server, shared by all clients ([`pipe::Pipe`] keeps
//! their requests apart). The supervisor starts it (with the control plane,
//! or on first use with `start: on-demand`, stopping it after
//! `idle_timeout_seconds`), restarts it with exponential backoff when it
//! dies, and gives up (state `failed`, its tools leave the lists) after
//! [`CRASHES_BEFORE_FAILED`] deaths within [`CRASH_WINDOW`]. A death answers
//! the calls in flight with an error naming the server.
//!
//! It never starts what the published catalog does not name
//! ([`Runtimes::sync`] is called after a good reload only), and no child
//! outlives it; it says on the changes channel when a server's offer may have
//! changed, and never rediscovers anything itself. Its HTTP endpoint is
//! `crate::http::pipe`.

pub mod link;
pub mod pipe;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::catalog::{Catalog, Runtime, Server, Start};
use crate::upstream::{Http, Reach};
use link::Link;
pub use pipe::Pipe;
use pipe::Unrouted;

/// Deaths within [`CRASH_WINDOW`] after which a server is left `failed`.
pub const CRASHES_BEFORE_FAILED: usize = 5;
pub const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// How long a stopped child has between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where a server the control plane runs or connects to stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    Starting,
    Running,
    /// Died; restarted after a delay that grows with each death.
    Backoff,
    /// Stopped by the operator; it stays so until started.
    Stopped,
    /// On demand: not started yet, or stopped for idleness; a call starts it.
    Idle,
    /// Died too often; it stays so until started.
    Failed,
}

impl std::fmt::Display for ProcessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProcessState::Starting => "starting",
            ProcessState::Running => "running",
            ProcessState::Backoff => "backoff",
            ProcessState::Stopped => "stopped",
            ProcessState::Idle => "idle",
            ProcessState::Failed => "failed",
        })
    }
}

/// Why a server the control plane runs cannot take a call or a command.
/// Its text is what the caller gets, naming what to do where there is
/// something to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("server {0:?} is not in the catalog")]
    NotInCatalog(String),
    #[error("server {0:?} is not one the gateway runs (runtime stdio or sse)")]
    NotRunHere(String),
    #[error("server {0:?} is shutting down")]
    ShuttingDown(String),
    #[error("server {name:?} is {state}{}; POST /servers/{name}/start to start it", last(.last_error))]
    Down { name: String, state: ProcessState, last_error: Option<String> },
    #[error("server {name:?} is {state} and was not ready within {seconds} s{}", last(.last_error))]
    NotReady { name: String, state: ProcessState, seconds: u64, last_error: Option<String> },
    #[error("server {0:?} is not running")]
    NotRunning(String),
    #[error("server {0:?} is gone")]
    Gone(String),
}

fn last(error: &Option<String>) -> String {
    error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
}

/// What `/servers` shows of a server the control plane runs or connects to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessStatus {
    pub state: ProcessState,
    pub pid: Option<u32>,
    /// How many times it died.
    pub restarts: u32,
    pub uptime_seconds: Option<u64>,
    pub last_error: Option<String>,
}

/// What the operator asks of a server the control plane runs.
pub enum Command {
    Start,
    Stop,
    Restart,
    Shutdown(oneshot::Sender<()>),
}

struct Live {
    state: ProcessState,
    pid: Option<u32>,
    restarts: u32,
    since: Option<Instant>,
    last_error: Option<String>,
}

/// One server's supervisor, as the rest of the control plane sees it.
struct Supervised {
    identity: String,
    on_demand: bool,
    /// How long a call waits for the server to be (re)started.
    wait: Duration,
    live: Mutex<Live>,
    /// The connection while running, with the server's `initialize` result.
    ready: watch::Sender<Option<(Arc<Pipe>, Arc<Value>)>>,
    last_used: Mutex<Instant>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Supervised {
    fn set(&self, state: ProcessState, pid: Option<u32>) {
        if let Ok(mut l) = self.live.lock() {
            l.state = state;
            l.pid = pid;
            l.since = (state == ProcessState::Running).then(Instant::now);
        }
    }

    fn status(&self) -> ProcessStatus {
        match self.live.lock() {
            Ok(l) => ProcessStatus {
                state: l.state,
                pid: l.pid,
                restarts: l.restarts,
                uptime_seconds: l.since.map(|s| s.elapsed().as_secs()),
                last_error: l.last_error.clone(),
            },
            // A supervisor that panicked holding the lock: it runs no more.
            Err(_) => ProcessStatus { state: ProcessState::Failed, pid: None, restarts: 0, uptime_seconds: None, last_error: None },
        }
    }
}

/// Every server the control plane runs or connects to.
pub struct Runtimes {
    servers: Mutex<HashMap<String, Arc<Supervised>>>,
    /// Set by [`Runtimes::shutdown`]: nothing starts after it.
    closed: std::sync::atomic::AtomicBool,
    base_dir: PathBuf,
    /// Names of servers whose offer may have changed (restarted, failed,
    /// or said `list_changed`): the controller discovers them again.
    changed: mpsc::UnboundedSender<String>,
}

impl Runtimes {
    /// `base_dir`: where relative commands and working directories are
    /// taken from (the catalog's directory).
    pub fn new(base_dir: PathBuf, changed: mpsc::UnboundedSender<String>) -> Self {
        Runtimes { servers: Mutex::default(), closed: Default::default(), base_dir, changed }
    }

    /// Makes the running set match the catalog: starts new servers, restarts
    /// changed ones (their TLS files too), stops removed ones. `reach` was
    /// made with the catalog: it holds the client of each SSE server.
    pub fn sync(&self, catalog: &Catalog, reach: &Reach) {
        let Ok(mut servers) = self.servers.lock() else { return };
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let wanted: HashMap<&str, &Server> = catalog.servers.iter().filter(|s| s.piped()).map(|s| (s.name.as_str(), s)).collect();
        servers.retain(|name, sup| {
            let keep = wanted.get(name.as_str()).is_some_and(|s| reach.identity(s) == sup.identity);
            if !keep {
                let (ack, _) = oneshot::channel();
                let _ = sup.commands.send(Command::Shutdown(ack));
            }
            keep
        });
        for (name, spec) in wanted {
            if servers.contains_key(name) {
                continue;
            }
            let (commands, rx) = mpsc::unbounded_channel();
            let sup = Arc::new(Supervised {
                identity: reach.identity(spec),
                on_demand: spec.start == Start::OnDemand,
                wait: Duration::from_secs(spec.discovery_timeout_seconds),
                live: Mutex::new(Live {
                    state: if spec.start == Start::Eager { ProcessState::Starting } else { ProcessState::Idle },
                    pid: None,
                    restarts: 0,
                    since: None,
                    last_error: None,
                }),
                ready: watch::channel(None).0,
                last_used: Mutex::new(Instant::now()),
                commands,
            });
            servers.insert(name.to_string(), Arc::clone(&sup));
            let supervisor = Supervisor {
                sup,
                spec: spec.clone(),
                base_dir: self.base_dir.clone(),
                http: reach.own(name),
                changed: self.changed.clone(),
                max_message: catalog.gateway.max_upstream_event_bytes,
            };
            tokio::spawn(supervisor.run(rx));
        }
    }

    pub fn status(&self, name: &str) -> Option<ProcessStatus> {
        self.get(name).map(|s| s.status())
    }

    /// Whether the server is supervised as `identity` describes it (it may
    /// be starting, running, idle or failed): the catalog's version of it.
    pub fn runs(&self, name: &str, identity: &str) -> bool {
        self.get(name).is_some_and(|s| s.identity == identity)
    }

    /// Whether it is an on-demand server that is not running now.
    pub fn is_idle(&self, name: &str) -> bool {
        self.status(name).is_some_and(|p| p.state == ProcessState::Idle)
    }

    fn get(&self, name: &str) -> Option<Arc<Supervised>> {
        self.servers.lock().ok()?.get(name).cloned()
    }

    /// `start`, `stop` or `restart`, from the admin API.
    pub fn command(&self, name: &str, command: Command) -> Result<(), Error> {
        let sup = self.get(name).ok_or_else(|| Error::NotRunHere(name.into()))?;
        sup.commands.send(command).map_err(|_| Error::ShuttingDown(name.into()))
    }

    /// Stops every server (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and
    /// waits for them.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Supervised>> = match self.servers.lock() {
            Ok(mut s) => {
                // Under the lock, so that no reload starts one meanwhile.
                self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
                s.drain().map(|(_, v)| v).collect()
            }
            Err(_) => Vec::new(),
        };
        let waits = all.iter().filter_map(|sup| {
            let (ack, done) = oneshot::channel();
            sup.commands.send(Command::Shutdown(ack)).ok().map(|()| done)
        });
        let all_done = futures::future::join_all(waits);
        let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(3), all_done).await;
    }

    /// The server's connection, once it is running: started first if it is
    /// on-demand, waited for (up to `wait`) if it is starting or restarting.
    /// `use_counts`: whether this counts as use (discovery's does not, or an
    /// on-demand server would never be idle long enough to stop).
    pub async fn connection(&self, name: &str, use_counts: bool) -> Result<(Arc<Pipe>, Arc<Value>), Error> {
        let sup = self.get(name).ok_or_else(|| Error::NotInCatalog(name.into()))?;
        if use_counts {
            if let Ok(mut t) = sup.last_used.lock() {
                *t = Instant::now();
            }
        }
        let wait = sup.wait;
        let mut ready = sup.ready.subscribe();
        if let Some(c) = ready.borrow().clone() {
            return Ok(c);
        }
        let status = sup.status();
        match status.state {
            // Also while it is being stopped for idleness: the start waits
            // in line behind the stop.
            ProcessState::Idle | ProcessState::Running if sup.on_demand => {
                let _ = sup.commands.send(Command::Start);
            }
            ProcessState::Failed | ProcessState::Stopped | ProcessState::Idle => {
                return Err(Error::Down { name: name.into(), state: status.state, last_error: status.last_error });
            }
            _ => {}
        }
        let waited = tokio::time::timeout(wait, ready.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(c)) => c.clone().ok_or_else(|| Error::NotRunning(name.into())),
            _ => {
                let s = sup.status();
                Err(Error::NotReady { name: name.into(), state: s.state, seconds: wait.as_secs(), last_error: s.last_error })
            }
        }
    }
}

struct Supervisor {
    sup: Arc<Supervised>,
    spec: Server,
    base_dir: PathBuf,
    /// The client of its TLS setting, for an SSE server.
    http: Http,
    changed: mpsc::UnboundedSender<String>,
    /// The longest message it may send (`gateway.max_upstream_event_bytes`).
    max_message: usize,
}

/// How a running connection ended.
enum Outcome {
    Died(String),
    Stopped,
    Idle,
    Restart,
    Shutdown(oneshot::Sender<()>),
}

impl Supervisor {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn changed(&self) {
        let _ = self.changed.send(self.spec.name.clone());
    }

    async fn run(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut want = self.spec.start == Start::Eager;
        let mut deaths: VecDeque<Instant> = VecDeque::new();
        loop {
            if !want {
                match commands.recv().await {
                    None => return,
                    Some(Command::Shutdown(ack)) => {
                        let _ = ack.send(());
                        return;
                    }
                    Some(Command::Stop) => continue,
                    Some(Command::Start | Command::Restart) => {
                        want = true;
                        deaths.clear();
                    }
                }
            }
            self.sup.set(ProcessState::Starting, None);
            let why = match self.open().await {
                Err(e) => e,
                Ok(link) => match self.serve(link, &mut commands).await {
                    Outcome::Died(why) => why,
                    Outcome::Stopped => {
                        want = false;
                        self.sup.set(ProcessState::Stopped, None);
                        tracing::info!(server = %self.name(), "server stopped");
                        self.changed();
                        continue;
                    }
                    Outcome::Idle => {
                        want = false;
                        self.sup.set(ProcessState::Idle, None);
                        tracing::info!(server = %self.name(), "server stopped after being idle; it starts again on the next call");
                        continue;
                    }
                    Outcome::Restart => continue,
                    Outcome::Shutdown(ack) => {
                        self.sup.set(ProcessState::Stopped, None);
                        let _ = ack.send(());
                        return;
                    }
                },
            };
            let now = Instant::now();
            deaths.push_back(now);
            while deaths.front().is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW) {
                deaths.pop_front();
            }
            if let Ok(mut l) = self.sup.live.lock() {
                l.restarts += 1;
                l.last_error = Some(why.clone());
            }
            if deaths.len() >= CRASHES_BEFORE_FAILED {
                want = false;
                self.sup.set(ProcessState::Failed, None);
                tracing::error!(server = %self.name(), error = %why, "server failed {} times within {} s; left stopped until started again", deaths.len(), CRASH_WINDOW.as_secs());
                self.changed();
                continue;
            }
            let delay = Duration::from_millis(500).saturating_mul(1 << (deaths.len() - 1).min(6)).min(Duration::from_secs(30));
            tracing::warn!(server = %self.name(), error = %why, delay_ms = delay.as_millis() as u64, "server stopped unexpectedly; restarting");
            self.sup.set(ProcessState::Backoff, None);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Shutdown(ack)) => {
                        self.sup.set(ProcessState::Stopped, None);
                        let _ = ack.send(());
                        return;
                    }
                    Some(Command::Stop) => {
                        want = false;
                        self.sup.set(ProcessState::Stopped, None);
                    }
                    Some(Command::Start | Command::Restart) => {}
                },
            }
        }
    }

    async fn open(&self) -> Result<Link, String> {
        match self.spec.runtime {
            Runtime::Stdio => link::spawn(&self.spec, &self.base_dir, self.max_message),
            Runtime::Sse => {
                let limit = Duration::from_secs(self.spec.discovery_timeout_seconds);
                tokio::time::timeout(limit, link::connect_sse(&self.spec, &self.http, self.max_message))
                    .await
                    .unwrap_or_else(|_| Err(format!("named no endpoint within {} s", limit.as_secs())))
            }
            Runtime::Http => Err("runtime http is not run by the gateway".into()),
        }
    }

    /// Runs one connection: handshake, then serve until it ends.
    async fn serve(&self, mut link: Link, commands: &mut mpsc::UnboundedReceiver<Command>) -> Outcome {
        let pipe = Arc::new(Pipe::new(self.name(), link.outgoing.clone()));
        let incoming = std::mem::replace(&mut link.incoming, mpsc::channel(1).1);
        let reader = tokio::spawn(read(Arc::clone(&pipe), incoming, self.name().to_string(), self.changed.clone()));
        link.tasks.push(reader.abort_handle());
        let limit = Duration::from_secs(self.spec.discovery_timeout_seconds);
        let init = tokio::select! {
            r = tokio::time::timeout(limit, handshake(&pipe)) => r.unwrap_or_else(|_| Err(format!("did not answer initialize within {} s", limit.as_secs()))),
            // It ended by itself: nothing to stop.
            why = &mut link.ended => return Outcome::Died(why),
        };
        let init = match init {
            Ok(init) => init,
            Err(why) => {
                stop(&mut link).await;
                return Outcome::Died(format!("could not be initialised: {why}"));
            }
        };
        self.sup.set(ProcessState::Running, link.pid);
        self.sup.ready.send_replace(Some((Arc::clone(&pipe), Arc::new(init))));
        tracing::info!(server = %self.name(), pid = ?link.pid, "server running");
        self.changed();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let outcome = loop {
            tokio::select! {
                why = &mut link.ended => break Outcome::Died(why),
                cmd = commands.recv() => match cmd {
                    Some(Command::Start) => {}
                    Some(Command::Stop) => break Outcome::Stopped,
                    Some(Command::Restart) => break Outcome::Restart,
                    Some(Command::Shutdown(ack)) => break Outcome::Shutdown(ack),
                    None => break Outcome::Shutdown(oneshot::channel().0),
                },
                _ = tick.tick(), if self.sup.on_demand => {
                    let idle = self.sup.last_used.lock().map(|t| t.elapsed()).unwrap_or_default();
                    if idle > self.spec.process_idle_timeout() && pipe.in_flight() == 0 {
                        break Outcome::Idle;
                    }
                }
            }
        };
        self.sup.ready.send_replace(None);
        if matches!(outcome, Outcome::Idle) {
            self.sup.set(ProcessState::Idle, None);
        }
        let why = match &outcome {
            Outcome::Died(why) => why.clone(),
            Outcome::Restart => "was restarted".to_string(),
            _ => "was stopped".to_string(),
        };
        if !matches!(outcome, Outcome::Died(_)) {
            stop(&mut link).await;
        }
        pipe.fail_all(&why);
        outcome
    }
}

/// Routes what the server sends.
async fn read(pipe: Arc<Pipe>, mut incoming: mpsc::Receiver<String>, name: String, changed: mpsc::UnboundedSender<String>) {
    while let Some(line) = incoming.recv().await {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            tracing::warn!(server = %name, "the server sent a line that is not JSON");
            continue;
        };
        match pipe.dispatch(message) {
            None | Some(Unrouted::Stray) => {}
            Some(Unrouted::Answer(a)) => {
                // Never wait here: a server blocked writing to us while its
                // stdin is full would wait for us in turn.
                if !pipe.try_send(&a) {
                    tracing::warn!(server = %name, "could not answer a request from the server (its input is full)");
                }
            }
            Some(Unrouted::ListChanged) => {
                let _ = changed.send(name.clone());
            }
            Some(Unrouted::Notification(n)) => {
                let method = n.get("method").and_then(Value::as_str).unwrap_or_default();
                tracing::info!(server = %name, %method, params = %n.get("params").cloned().unwrap_or_default(), "server notification");
            }
        }
    }
}

/// `initialize` and `notifications/initialized`; returns the result. The
/// gateway answers clients' `initialize` for this server with it.
async fn handshake(pipe: &Arc<Pipe>) -> Result<Value, String> {
    let request = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "mcp-gateway", "version": env!("CARGO_PKG_VERSION") } },
    });
    let mut call = pipe.call(request).await.map_err(|e| e.to_string())?;
    let answer = loop {
        match call.messages.recv().await {
            Some(m) if m.get("result").is_some() || m.get("error").is_some() => break m,
            Some(_) => continue,
            None => return Err("the connection closed during initialize".into()),
        }
    };
    if let Some(e) = answer.get("error") {
        return Err(format!("initialize failed: {e}"));
    }
    pipe.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await.map_err(|e| e.to_string())?;
    Ok(answer.get("result").cloned().unwrap_or_default())
}

/// Stops a connection: SIGTERM to the child's process group, SIGKILL after
/// [`STOP_GRACE`]. (A legacy SSE connection just closes when dropped.)
async fn stop(link: &mut Link) {
    let Some(pid) = link.pid else { return };
    link::signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, &mut link.ended).await.is_err() {
        tracing::warn!(pid, "server did not stop within {} s; killing it", STOP_GRACE.as_secs());
        link::signal_group(pid, libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut link.ended).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, ProcessState};

    #[test]
    fn errors_say_what_to_do() {
        let down = Error::Down { name: "time".into(), state: ProcessState::Failed, last_error: Some("exit status: 3".into()) };
        assert_eq!(down.to_string(), "server \"time\" is failed (last error: exit status: 3); POST /servers/time/start to start it");
        let slow = Error::NotReady { name: "t".into(), state: ProcessState::Starting, seconds: 10, last_error: None };
        assert_eq!(slow.to_string(), "server \"t\" is starting and was not ready within 10 s");
        assert_eq!(serde_json::to_value(ProcessState::Backoff).unwrap(), "backoff");
    }
}
