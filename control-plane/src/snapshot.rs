//! The snapshot cache: the one place where "the configuration Envoy should have now" lives.
//!
//! This module owns three things:
//! - [`Snapshot`], a complete, versioned set of xDS resources grouped by type URL;
//! - [`SnapshotCache`], which holds the current snapshot and wakes whoever subscribed when a
//!   new one is published;
//! - a small registry of what each Envoy node was sent, accepted and rejected, read by the
//!   admin API through [`SnapshotCache::status`].
//!
//! It must never know about gRPC streams, compile a catalog or do I/O. Publishers (the catalog
//! watcher, the compiler, tool discovery) call [`SnapshotCache::set`] with a snapshot that has
//! already passed its consistency check; the ADS server in `ads` only reads. This split is
//! go-control-plane's `SnapshotCache` / `NewServer`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

/// The protobuf `Any` that envoy-types' generated messages use.
///
/// envoy-types generates its own copy of the well-known types (it does not use
/// `prost_types`), so this is the type `DiscoveryResponse::resources` expects.
pub use envoy_types::pb::google::protobuf::Any;

/// Type URL of CDS resources.
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Type URL of LDS resources.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Type URL of RDS resources.
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Type URL of ECDS resources (the wasm filter's configuration is pushed this way).
pub const EXTENSION_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// Type URL of SDS resources (the listener's certificate and client CAs).
pub const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The order in which a new snapshot is pushed to a stream.
///
/// Clusters come first because the filter configuration (ECDS) names clusters for its outbound
/// calls, and a call to a cluster Envoy does not know yet fails. Listeners then reference the
/// extension configuration and route configurations, which arrive last; a listener warms until
/// they do.
pub const PUSH_ORDER: [&str; 5] = [CLUSTER_TYPE, SECRET_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, ROUTE_TYPE];

/// A complete set of resources that Envoy should run, under one version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Version of every type in this snapshot. Publishers must change it whenever any resource
    /// changes: the ADS server decides what is new by comparing versions, never content.
    pub version: String,
    /// Resources by type URL, each as (resource name, packed resource). A type that is absent
    /// is served as an empty set for the four types above (an empty set of clusters or
    /// listeners deletes them all in Envoy).
    pub resources: BTreeMap<String, Vec<(String, Any)>>,
}

impl Snapshot {
    /// An empty snapshot with the given version.
    pub fn new(version: impl Into<String>) -> Self {
        Self { version: version.into(), resources: BTreeMap::new() }
    }

    /// Builder-style: sets the resources of one type, replacing any set before.
    #[must_use]
    pub fn with_resources(mut self, type_url: impl Into<String>, resources: Vec<(String, Any)>) -> Self {
        self.resources.insert(type_url.into(), resources);
        self
    }

    /// The resources of one type (empty if the snapshot has none).
    pub fn resources_of(&self, type_url: &str) -> &[(String, Any)] {
        self.resources.get(type_url).map_or(&[], Vec::as_slice)
    }

    /// Whether this snapshot answers requests for `type_url`: the four types we serve always,
    /// anything else only if the publisher put it in. Envoy waits on a type nobody answers,
    /// which is better than being told "there are none" of something we never meant to manage.
    pub fn serves(&self, type_url: &str) -> bool {
        PUSH_ORDER.contains(&type_url) || self.resources.contains_key(type_url)
    }
}

/// Holds the current snapshot and the xDS client status registry. Cheap to clone: every clone
/// shares the same state.
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    inner: Arc<CacheInner>,
}

#[derive(Debug)]
struct CacheInner {
    /// `None` until the first snapshot is published. The ADS server answers nothing before
    /// then, so a restarted control plane never wipes a running Envoy with an empty set.
    current: watch::Sender<Option<Arc<Snapshot>>>,
    registry: Mutex<HashMap<String, NodeEntry>>,
}

impl Default for SnapshotCache {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotCache {
    /// A cache with no snapshot yet.
    pub fn new() -> Self {
        let (current, _) = watch::channel(None);
        Self { inner: Arc::new(CacheInner { current, registry: Mutex::new(HashMap::new()) }) }
    }

    /// Publishes a new snapshot and wakes every subscriber.
    pub fn set(&self, snapshot: Snapshot) {
        // `send_replace` stores the value even when nobody subscribes yet, unlike `send`.
        self.inner.current.send_replace(Some(Arc::new(snapshot)));
    }

    /// The current snapshot, if one was published.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.inner.current.borrow().clone()
    }

    /// A receiver that sees the current snapshot and is woken by each later `set`.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.inner.current.subscribe()
    }

    /// What every Envoy node seen so far was sent, accepted and rejected, sorted by node id.
    pub fn status(&self) -> Vec<NodeStatus> {
        let snapshot = self.current();
        let current = |type_url: &str, t: &TypeEntry| {
            let Some(snapshot) = &snapshot else { return false };
            let wanted = |name: &String| {
                t.requested_names.is_empty() || t.requested_names.contains(name) || type_url == CLUSTER_TYPE || type_url == LISTENER_TYPE
            };
            t.last_acked_version.as_deref() == Some(snapshot.version.as_str())
                || !snapshot.resources_of(type_url).iter().any(|(name, _)| wanted(name))
        };
        let registry = self.registry();
        let mut nodes: Vec<NodeStatus> = registry
            .iter()
            .map(|(node_id, entry)| NodeStatus {
                node_id: node_id.clone(),
                connected: entry.streams > 0,
                streams: entry.streams,
                types: entry
                    .types
                    .iter()
                    .map(|(type_url, t)| TypeStatus {
                        type_url: type_url.clone(),
                        requested_names: t.requested_names.clone(),
                        last_sent_version: t.last_sent_version.clone(),
                        last_acked_version: t.last_acked_version.clone(),
                        last_acked_at: t.last_acked_at,
                        last_nack: t.last_nack.clone(),
                        sent: t.sent,
                        sent_bytes: t.sent_bytes,
                        last_sent_bytes: t.last_sent_bytes,
                        acks: t.acks,
                        nacks: t.nacks,
                        current: current(type_url, t),
                    })
                    .collect(),
            })
            .collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        nodes
    }

    /// Records that a stream for `node_id` opened. Pair with [`Self::stream_closed`].
    pub fn stream_opened(&self, node_id: &str) {
        self.registry().entry(node_id.to_owned()).or_default().streams += 1;
    }

    /// Records that a stream for `node_id` ended.
    pub fn stream_closed(&self, node_id: &str) {
        if let Some(entry) = self.registry().get_mut(node_id) {
            entry.streams = entry.streams.saturating_sub(1);
        }
    }

    /// Records the resource names `node_id` last asked for of `type_url` (empty: all).
    pub fn record_request(&self, node_id: &str, type_url: &str, names: &[String]) {
        self.with_type(node_id, type_url, |t| {
            if t.requested_names != names {
                t.requested_names = names.to_vec();
            }
        });
    }

    /// Records that `version` of `type_url` was sent to `node_id`, in a
    /// response of `bytes` bytes (its protobuf encoding).
    pub fn record_sent(&self, node_id: &str, type_url: &str, version: &str, bytes: usize) {
        self.with_type(node_id, type_url, |t| {
            t.last_sent_version = Some(version.to_owned());
            t.sent += 1;
            t.sent_bytes += bytes as u64;
            t.last_sent_bytes = bytes as u64;
        });
    }

    /// Records that `node_id` accepted `version` of `type_url` at `at`.
    pub fn record_ack(&self, node_id: &str, type_url: &str, version: &str, at: SystemTime) {
        self.with_type(node_id, type_url, |t| {
            t.last_acked_version = Some(version.to_owned());
            t.last_acked_at = Some(at);
            t.acks += 1;
        });
    }

    /// Records that `node_id` rejected `version` of `type_url` with `error`.
    pub fn record_nack(&self, node_id: &str, type_url: &str, version: &str, error: &str, at: SystemTime) {
        self.with_type(node_id, type_url, |t| {
            t.last_nack = Some(Nack { version: version.to_owned(), error: error.to_owned(), at });
            t.nacks += 1;
        });
    }

    fn with_type(&self, node_id: &str, type_url: &str, f: impl FnOnce(&mut TypeEntry)) {
        let mut registry = self.registry();
        let entry = registry.entry(node_id.to_owned()).or_default();
        f(entry.types.entry(type_url.to_owned()).or_default());
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<String, NodeEntry>> {
        // The registry holds plain status values that every writer leaves consistent, so a
        // panic elsewhere while the lock was held does not make it wrong: keep serving it.
        self.inner.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct NodeEntry {
    /// Open ADS streams for this node id. A count, not a flag, because a reconnecting Envoy
    /// may open its new stream before the old one is seen to close.
    streams: usize,
    types: BTreeMap<String, TypeEntry>,
}

#[derive(Debug, Default)]
struct TypeEntry {
    requested_names: Vec<String>,
    last_sent_version: Option<String>,
    last_acked_version: Option<String>,
    last_acked_at: Option<SystemTime>,
    last_nack: Option<Nack>,
    sent: u64,
    sent_bytes: u64,
    last_sent_bytes: u64,
    acks: u64,
    nacks: u64,
}

/// xDS status of one Envoy node, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// The `node.id` Envoy sent.
    pub node_id: String,
    /// Whether at least one ADS stream from this node is open.
    pub connected: bool,
    /// How many ADS streams from this node are open.
    pub streams: usize,
    /// Per type URL, sorted by type URL.
    pub types: Vec<TypeStatus>,
}

/// xDS status of one resource type on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    pub type_url: String,
    /// The resource names the node last asked for, sorted; empty means all. A name here that
    /// no snapshot has is what a warming listener waits for.
    pub requested_names: Vec<String>,
    /// The version of the last response sent.
    pub last_sent_version: Option<String>,
    /// The last version the node accepted.
    pub last_acked_version: Option<String>,
    /// When that acceptance arrived: with the time of a catalog change, how long the change
    /// took to be running in Envoy.
    pub last_acked_at: Option<SystemTime>,
    /// The last rejection, kept after later ACKs so an operator can still see what failed.
    pub last_nack: Option<Nack>,
    /// Responses sent, accepted and rejected since the node was first seen.
    pub sent: u64,
    /// Bytes of those responses (protobuf encoding), in all and of the last.
    pub sent_bytes: u64,
    pub last_sent_bytes: u64,
    pub acks: u64,
    pub nacks: u64,
    /// Whether the node runs all of this type that the current snapshot holds
    /// for it: it accepted that version, or the version holds nothing it asked
    /// for. The latter is a type it stopped using, such as the certificates of
    /// servers removed from the catalog: Envoy drops those subscriptions
    /// without a request, and ignores (does not acknowledge) later responses.
    pub current: bool,
}

/// One rejected response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nack {
    /// The version that was rejected.
    pub version: String,
    /// Envoy's `error_detail.message`.
    pub error: String,
    /// When the rejection arrived.
    pub at: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_current_and_subscribe() {
        let cache = SnapshotCache::new();
        assert_eq!(cache.current(), None);
        let mut rx = cache.subscribe();
        cache.set(Snapshot::new("1"));
        assert!(rx.has_changed().unwrap());
        let seen = rx.borrow_and_update().clone().unwrap();
        assert_eq!(seen.version, "1");
        assert_eq!(cache.current().unwrap().version, "1");
        // A clone shares the same state.
        cache.clone().set(Snapshot::new("2"));
        assert_eq!(cache.current().unwrap().version, "2");
    }

    #[test]
    fn set_without_subscribers_is_kept() {
        let cache = SnapshotCache::new();
        cache.set(Snapshot::new("a"));
        assert_eq!(cache.current().unwrap().version, "a");
    }

    #[test]
    fn serves_known_types_even_when_absent() {
        let s = Snapshot::new("1").with_resources("type.googleapis.com/x.Y", vec![]);
        for t in PUSH_ORDER {
            assert!(s.serves(t), "{t}");
            assert!(s.resources_of(t).is_empty());
        }
        assert!(s.serves("type.googleapis.com/x.Y"));
        assert!(!s.serves("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"));
    }

    #[test]
    fn registry_tracks_streams_and_versions() {
        let cache = SnapshotCache::new();
        cache.stream_opened("n1");
        cache.stream_opened("n1");
        cache.record_sent("n1", CLUSTER_TYPE, "3", 100);
        let acked_at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7);
        cache.record_ack("n1", CLUSTER_TYPE, "3", acked_at);
        let at = SystemTime::UNIX_EPOCH;
        cache.record_request("n1", ROUTE_TYPE, &["r1".into()]);
        cache.record_nack("n1", ROUTE_TYPE, "3", "bad route", at);
        cache.stream_closed("n1");
        cache.stream_opened("n0");
        cache.stream_closed("n0");
        cache.stream_closed("n0"); // extra closes never underflow

        let status = cache.status();
        assert_eq!(status.len(), 2);
        assert_eq!(status[0].node_id, "n0");
        assert!(!status[0].connected);
        let n1 = &status[1];
        assert!(n1.connected);
        assert_eq!(n1.streams, 1);
        assert_eq!(
            n1.types,
            vec![
                TypeStatus {
                    type_url: CLUSTER_TYPE.into(),
                    requested_names: vec![],
                    last_sent_version: Some("3".into()),
                    last_acked_version: Some("3".into()),
                    last_acked_at: Some(acked_at),
                    last_nack: None,
                    sent: 1,
                    sent_bytes: 100,
                    last_sent_bytes: 100,
                    acks: 1,
                    nacks: 0,
                    current: false,
                },
                TypeStatus {
                    type_url: ROUTE_TYPE.into(),
                    requested_names: vec!["r1".into()],
                    last_sent_version: None,
                    last_acked_version: None,
                    last_acked_at: None,
                    last_nack: Some(Nack { version: "3".into(), error: "bad route".into(), at }),
                    sent: 0,
                    sent_bytes: 0,
                    last_sent_bytes: 0,
                    acks: 0,
                    nacks: 1,
                    current: false,
                },
            ]
        );
    }

    #[test]
    fn a_type_is_current_once_acked_or_when_the_snapshot_holds_nothing_asked_for() {
        let cache = SnapshotCache::new();
        let any = || envoy_types::pb::google::protobuf::Any::default();
        let mut resources = BTreeMap::new();
        resources.insert(CLUSTER_TYPE.to_string(), vec![("c".to_string(), any())]);
        resources.insert(SECRET_TYPE.to_string(), vec![("mcp_a/ca".to_string(), any())]);
        cache.set(Snapshot { version: "2".into(), resources });
        cache.stream_opened("n");
        cache.record_sent("n", CLUSTER_TYPE, "2", 0);
        cache.record_ack("n", CLUSTER_TYPE, "2", SystemTime::UNIX_EPOCH);
        cache.record_request("n", SECRET_TYPE, &["mcp_a/ca".into()]);
        let current = |cache: &SnapshotCache| cache.status()[0].types.iter().map(|t| t.current).collect::<Vec<_>>();
        assert_eq!(current(&cache), vec![true, false], "the secret it asks for is not running yet");
        // The server whose certificate that was leaves the catalog: Envoy
        // still names it (it says nothing when it stops), but nothing of it is
        // served any more.
        let mut resources = BTreeMap::new();
        resources.insert(CLUSTER_TYPE.to_string(), vec![("c".to_string(), any())]);
        cache.set(Snapshot { version: "3".into(), resources });
        cache.record_ack("n", CLUSTER_TYPE, "3", SystemTime::UNIX_EPOCH);
        assert_eq!(current(&cache), vec![true, true]);
    }
}
