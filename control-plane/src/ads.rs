//! The Aggregated Discovery Service: serves the current snapshot to Envoy over one gRPC stream
//! per Envoy, State of the World.
//!
//! This module owns the xDS protocol: per-type versions and nonces, ACK and NACK, stale nonces,
//! the push order, and recording each node's status in the cache's registry.
//!
//! It must never build, compile or change configuration. It only serves whatever snapshot
//! [`SnapshotCache`] holds now and is woken when a new one is published; everything else
//! (watching the catalog, compiling, discovering tools) publishes snapshots and knows nothing
//! about streams. Delta xDS is not implemented.
//!
//! The rules, per stream and per type URL:
//! - the first request for a type (or any request without a nonce) is answered;
//! - a request whose nonce is not the last nonce sent for that type answers an older response
//!   and is ignored;
//! - an ACK (the version we sent, no `error_detail`) is recorded and needs no answer;
//! - a NACK is logged and recorded, and is not answered: resending the version Envoy just
//!   rejected would loop. The next snapshot brings a new version. The one exception is the
//!   filter configuration rejected because Envoy could not make the wasm VM: Envoy rejects it
//!   while it fetches a module it does not have yet (`nack_on_code_cache_miss`), so that
//!   version is sent again a few times, further and further apart ([`retry_delay`]), until
//!   Envoy has the module and accepts it (docs/design/module-delivery.md);
//! - a change of the requested names (routes, extension configs) is answered with the new set;
//! - a new snapshot is pushed to every subscribed type, clusters first (see [`PUSH_ORDER`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::snapshot::{Snapshot, SnapshotCache, CLUSTER_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, PUSH_ORDER};

/// Largest gRPC message accepted or sent. A whole route table or filter configuration for a
/// large catalog can exceed tonic's 4 MiB default, and Envoy then sees a stream error instead
/// of configuration.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Node id recorded for a stream whose first request carries no `node`.
const UNKNOWN_NODE: &str = "(unknown)";

/// Responses waiting for the client to read them, per stream. A small bound makes a slow
/// Envoy slow down its own stream task, not grow memory.
const RESPONSE_BUFFER: usize = 16;

/// The ADS gRPC service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdsServer {
    cache: SnapshotCache,
    /// Numbers streams so nonces are unique across streams, which also makes them readable in
    /// logs.
    next_stream: Arc<AtomicU64>,
}

/// Response stream of [`AdsServer::stream_aggregated_resources`].
pub type AdsResponseStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

/// Response stream of [`AdsServer::delta_aggregated_resources`], which never yields.
pub type DeltaResponseStream = futures::stream::Empty<Result<DeltaDiscoveryResponse, Status>>;

impl AdsServer {
    /// A server for the snapshots published to `cache`.
    pub fn new(cache: SnapshotCache) -> Self {
        Self { cache, next_stream: Arc::new(AtomicU64::new(1)) }
    }

    /// The tonic service, with message size limits raised to [`MAX_MESSAGE_BYTES`].
    pub fn service(self) -> AggregatedDiscoveryServiceServer<AdsServer> {
        AggregatedDiscoveryServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = AdsResponseStream;
    type DeltaAggregatedResourcesStream = DeltaResponseStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        debug!(stream = id, remote = ?request.remote_addr(), "ADS stream opened");
        tokio::spawn(run_stream(self.cache.clone(), id, request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not implemented by this control plane; configure Envoy's \
             ads_config with api_type GRPC (State of the World), not DELTA_GRPC",
        ))
    }
}

/// Serves one ADS stream until the client closes it or goes away.
async fn run_stream(
    cache: SnapshotCache,
    id: u64,
    mut requests: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
) {
    let mut snapshots = cache.subscribe();
    // Clone out of the watch at once: holding its borrow across an await would block `set`.
    let mut snapshot = snapshots.borrow_and_update().clone();
    let mut watching = true;
    let mut stream = StreamState::new(cache, id, tx);

    loop {
        let step = tokio::select! {
            request = requests.next() => match request {
                Some(Ok(request)) => stream.on_request(request, snapshot.as_deref()).await,
                Some(Err(status)) => {
                    debug!(stream = id, %status, "ADS stream failed");
                    Err(StreamClosed)
                }
                None => Err(StreamClosed),
            },
            () = retry_timer(stream.retry_at()), if stream.retry_at().is_some() => match snapshot.as_deref() {
                Some(current) => stream.retry(current).await,
                None => Ok(()),
            },
            changed = snapshots.changed(), if watching => match changed {
                Ok(()) => {
                    snapshot = snapshots.borrow_and_update().clone();
                    match snapshot.as_deref() {
                        Some(new) => stream.push_all(new).await,
                        None => Ok(()),
                    }
                }
                // The cache is gone, so no snapshot will ever come again; keep answering
                // requests from the last one.
                Err(_) => {
                    watching = false;
                    Ok(())
                }
            },
        };
        if step.is_err() {
            break;
        }
    }
    debug!(stream = id, node = stream.node_id(), "ADS stream closed");
}

/// The client is gone: stop serving the stream.
#[derive(Debug)]
struct StreamClosed;

async fn retry_timer(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long to wait before sending again, for the `attempt`th time (from 0), a filter
/// configuration Envoy rejected because it could not make the wasm VM; `None`: give up (the
/// next snapshot tries again). Short at first: a starting Envoy's listener is up without its
/// filter until then, and the module, from the control plane next to Envoy, is usually there
/// before the NACK is; the later ones cover a control plane Envoy cannot reach for a while
/// (about two minutes in all).
pub fn retry_delay(attempt: u32) -> Option<Duration> {
    const FIRST: Duration = Duration::from_millis(20);
    const MAX: Duration = Duration::from_secs(30);
    const ATTEMPTS: u32 = 14;
    (attempt < ATTEMPTS).then(|| FIRST.saturating_mul(1 << attempt.min(16)).min(MAX))
}

/// Whether a NACK of the filter configuration says the wasm VM could not be made: what Envoy
/// says while it fetches the module (and also when the module or its configuration fails,
/// which a few more tries cannot hurt).
fn vm_not_made(type_url: &str, message: &str) -> bool {
    type_url == EXTENSION_CONFIG_TYPE && message.contains("Unable to create Wasm")
}

/// A filter configuration to send again.
#[derive(Debug)]
struct Retry {
    version: String,
    attempt: u32,
    /// When; `None` while the last one sent waits for Envoy's answer.
    at: Option<tokio::time::Instant>,
}

/// One ADS stream's state.
struct StreamState {
    cache: SnapshotCache,
    id: u64,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    /// Set from the first request; marks the node connected until dropped.
    node: Option<Registration>,
    next_nonce: u64,
    types: HashMap<String, TypeState>,
    retry: Option<Retry>,
}

impl StreamState {
    fn new(cache: SnapshotCache, id: u64, tx: mpsc::Sender<Result<DiscoveryResponse, Status>>) -> Self {
        Self { cache, id, tx, node: None, next_nonce: 1, types: HashMap::new(), retry: None }
    }

    fn retry_at(&self) -> Option<tokio::time::Instant> {
        self.retry.as_ref().and_then(|r| r.at)
    }

    /// Sends again the filter configuration Envoy rejected, if it is still the one served.
    async fn retry(&mut self, snapshot: &Snapshot) -> Result<(), StreamClosed> {
        let Some(retry) = self.retry.as_mut() else { return Ok(()) };
        retry.at = None;
        let attempt = retry.attempt + 1;
        if retry.version != snapshot.version {
            self.retry = None;
            return Ok(());
        }
        info!(node = self.node_id(), version = snapshot.version, attempt, "sending the rejected filter configuration again");
        self.send_marked(snapshot, EXTENSION_CONFIG_TYPE, Some(attempt)).await
    }

    /// After a NACK of `rejected`: plans to send it again if Envoy could not make the VM.
    fn plan_retry(&mut self, type_url: &str, rejected: &str, message: &str, snapshot: Option<&Snapshot>) {
        if !vm_not_made(type_url, message) || snapshot.is_none_or(|s| s.version != rejected) {
            return;
        }
        let attempt = self.retry.as_ref().filter(|r| r.version == rejected).map_or(0, |r| r.attempt + 1);
        match retry_delay(attempt) {
            Some(delay) => {
                info!(
                    node = self.node_id(),
                    version = rejected,
                    in_ms = delay.as_millis() as u64,
                    "Envoy could not make the filter's VM (it fetches the module meanwhile, or the module failed); sending it again"
                );
                self.retry = Some(Retry { version: rejected.to_owned(), attempt, at: Some(tokio::time::Instant::now() + delay) });
            }
            None => {
                tracing::error!(
                    node = self.node_id(),
                    version = rejected,
                    "Envoy still rejects the filter configuration; it keeps running its last one until the next catalog change"
                );
                self.retry = None;
            }
        }
    }

    fn node_id(&self) -> &str {
        self.node.as_ref().map_or(UNKNOWN_NODE, |r| r.node_id.as_str())
    }

    async fn on_request(&mut self, request: DiscoveryRequest, snapshot: Option<&Snapshot>) -> Result<(), StreamClosed> {
        if self.node.is_none() {
            // Envoy may send `node` only on the first request of a stream
            // (`set_node_on_first_message_only`), so the stream keeps it.
            let node_id =
                request.node.as_ref().map(|n| n.id.clone()).filter(|id| !id.is_empty()).unwrap_or_else(|| UNKNOWN_NODE.to_owned());
            info!(stream = self.id, node = %node_id, "Envoy connected over ADS");
            self.node = Some(Registration::new(self.cache.clone(), node_id));
        }
        if request.type_url.is_empty() {
            // On an aggregated stream the type URL is the only way to tell types apart.
            warn!(stream = self.id, node = self.node_id(), "ignoring ADS request without type_url");
            return Ok(());
        }
        let type_url = request.type_url.clone();
        let version = snapshot.map(|s| s.version.as_str());
        let state = self.types.entry(type_url.clone()).or_default();
        let verdict = state.on_request(&request, version);
        if verdict != Verdict::Stale {
            let names: Vec<String> = state.names.iter().cloned().collect();
            self.cache.record_request(self.node_id(), &type_url, &names);
        }
        match verdict {
            Verdict::Stale => {
                debug!(
                    stream = self.id,
                    node = self.node_id(),
                    type_url,
                    nonce = request.response_nonce,
                    "ignoring request with a stale nonce"
                );
            }
            Verdict::Nack { rejected, message } => {
                warn!(
                    node = self.node_id(),
                    type_url,
                    rejected_version = rejected,
                    running_version = request.version_info,
                    error = message,
                    "Envoy rejected configuration (NACK)"
                );
                self.cache.record_nack(self.node_id(), &type_url, &rejected, &message, SystemTime::now());
                self.plan_retry(&type_url, &rejected, &message, snapshot);
            }
            Verdict::Proceed { acked, respond } => {
                if let Some(acked) = acked {
                    debug!(node = self.node_id(), type_url, version = acked, "ACK");
                    if type_url == EXTENSION_CONFIG_TYPE {
                        self.retry = None;
                    }
                    self.cache.record_ack(self.node_id(), &type_url, &acked, SystemTime::now());
                }
                if respond {
                    match snapshot {
                        Some(snapshot) if snapshot.serves(&type_url) => {
                            self.send(snapshot, &type_url).await?;
                        }
                        // Without a snapshot the subscription waits for the first one.
                        Some(_) => debug!(node = self.node_id(), type_url, "not answering a type this control plane does not serve"),
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Pushes a new snapshot to every subscribed type that has not got its version yet,
    /// clusters first.
    async fn push_all(&mut self, snapshot: &Snapshot) -> Result<(), StreamClosed> {
        let mut others: Vec<String> = self.types.keys().filter(|t| !PUSH_ORDER.contains(&t.as_str())).cloned().collect();
        others.sort();
        let order = PUSH_ORDER.iter().map(|t| (*t).to_owned()).chain(others);
        for type_url in order {
            let due = self.types.get(&type_url).is_some_and(|t| t.sent_version.as_deref() != Some(snapshot.version.as_str()));
            if due && snapshot.serves(&type_url) {
                self.send(snapshot, &type_url).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, snapshot: &Snapshot, type_url: &str) -> Result<(), StreamClosed> {
        self.send_marked(snapshot, type_url, None).await
    }

    /// Sends `type_url` of `snapshot`; with `again`, the filter configuration marked as sent
    /// again for that time (`compile::sent_again`: Envoy ignores one it already failed to apply).
    async fn send_marked(&mut self, snapshot: &Snapshot, type_url: &str, again: Option<u32>) -> Result<(), StreamClosed> {
        let nonce = format!("{}-{}", self.id, self.next_nonce);
        self.next_nonce += 1;
        let state = self.types.entry(type_url.to_owned()).or_default();
        let mut response = build_response(snapshot, type_url, &state.names, nonce.clone());
        if let Some(attempt) = again {
            for resource in &mut response.resources {
                if let Some(marked) = crate::compile::sent_again(resource, attempt) {
                    *resource = marked;
                }
            }
        }
        state.last_nonce = Some(nonce);
        state.sent_version = Some(snapshot.version.clone());
        state.sent_names = state.names.clone();
        // What each push costs the stream: the filter configuration's share
        // shows that the module is not in it (docs/design/module-delivery.md).
        let bytes = prost::Message::encoded_len(&response);
        debug!(
            node = self.node_id(),
            type_url,
            version = snapshot.version,
            resources = response.resources.len(),
            bytes,
            nonce = response.nonce,
            "sending"
        );
        self.cache.record_sent(self.node_id(), type_url, &snapshot.version, bytes);
        self.tx.send(Ok(response)).await.map_err(|_| StreamClosed)
    }
}

/// Marks a node connected for as long as it lives. A drop guard rather than a call at the end
/// of the stream task, so the node is marked disconnected even if the task is cancelled.
struct Registration {
    cache: SnapshotCache,
    node_id: String,
}

impl Registration {
    fn new(cache: SnapshotCache, node_id: String) -> Self {
        cache.stream_opened(&node_id);
        Self { cache, node_id }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        info!(node = %self.node_id, "Envoy disconnected from ADS");
        self.cache.stream_closed(&self.node_id);
    }
}

/// What one stream knows about one type URL.
#[derive(Debug, Default, Clone, PartialEq)]
struct TypeState {
    /// Nonce of the last response sent; `None` until the first.
    last_nonce: Option<String>,
    /// Version of the last response sent.
    sent_version: Option<String>,
    /// Resource names of the last request; empty means all.
    names: BTreeSet<String>,
    /// Resource names the last response was built for.
    sent_names: BTreeSet<String>,
}

/// What to do with one request, decided without I/O so it can be tested alone.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The nonce is not the last one sent: the request answers an older response.
    Stale,
    /// The client rejected version `rejected`.
    Nack { rejected: String, message: String },
    /// A current request; `acked` is the version it accepts, if it is an ACK.
    Proceed { acked: Option<String>, respond: bool },
}

impl TypeState {
    /// Applies a request for this type and decides what to do. `snapshot_version` is the
    /// version of the current snapshot, if there is one.
    fn on_request(&mut self, request: &DiscoveryRequest, snapshot_version: Option<&str>) -> Verdict {
        // A request without a nonce starts (or restarts) a subscription, and so does any
        // request before we ever answered this type on this stream: a nonce from an earlier
        // stream or another control plane instance means nothing here.
        let fresh = request.response_nonce.is_empty() || self.last_nonce.is_none();
        if !fresh && self.last_nonce.as_deref() != Some(request.response_nonce.as_str()) {
            return Verdict::Stale;
        }
        self.names = request.resource_names.iter().cloned().collect();
        if let Some(error) = request.error_detail.as_ref().filter(|_| !fresh) {
            return Verdict::Nack { rejected: self.sent_version.clone().unwrap_or_default(), message: error.message.clone() };
        }
        let acked = (!fresh && self.sent_version.as_deref() == Some(request.version_info.as_str())).then(|| request.version_info.clone());
        let outdated = snapshot_version.is_some_and(|v| self.sent_version.as_deref() != Some(v));
        let names_changed = !is_wildcard_type(&request.type_url) && self.names != self.sent_names;
        Verdict::Proceed { acked, respond: fresh || outdated || names_changed }
    }
}

/// Clusters and listeners are always sent whole: in State of the World a missing one is
/// deleted, whatever names the client asked for.
fn is_wildcard_type(type_url: &str) -> bool {
    type_url == CLUSTER_TYPE || type_url == LISTENER_TYPE
}

/// The response for one type: all its resources, or for other types than clusters and
/// listeners only those named, when names were requested. Requested names that the snapshot
/// does not have are left out; Envoy keeps waiting for them.
fn build_response(snapshot: &Snapshot, type_url: &str, names: &BTreeSet<String>, nonce: String) -> DiscoveryResponse {
    let filter = !is_wildcard_type(type_url) && !names.is_empty();
    let resources = snapshot
        .resources_of(type_url)
        .iter()
        .filter(|(name, _)| !filter || names.contains(name))
        .map(|(_, resource)| resource.clone())
        .collect();
    DiscoveryResponse { version_info: snapshot.version.clone(), resources, type_url: type_url.to_owned(), nonce, ..Default::default() }
}

#[cfg(test)]
mod tests;
