//! Tests of the ADS server: the per-type decision alone, then the real tonic service over
//! loopback with a real tonic client playing Envoy.
//!
//! "Nothing was sent" is never checked by waiting: after the request that must stay
//! unanswered, the client sends a request that is always answered (a fresh listener
//! subscription) and checks that its answer is the next message. The server handles a
//! stream's requests in order, so any answer to the first would have come before it.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use envoy_types::util::pack_any;
use prost::Message;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tonic::transport::server::TcpIncoming;
use tonic::Code;

use super::*;
use crate::snapshot::{Any, TypeStatus, EXTENSION_CONFIG_TYPE, ROUTE_TYPE};

/// Only a guard against hangs; no test passes or fails on speed.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// The per-type decision, data-driven.

fn req(type_url: &str, version: &str, nonce: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        type_url: type_url.into(),
        response_nonce: nonce.into(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    }
}

fn nack(mut request: DiscoveryRequest, message: &str) -> DiscoveryRequest {
    request.error_detail = Some(RpcStatus { code: 3, message: message.into(), details: vec![] });
    request
}

fn proceed(acked: Option<&str>, respond: bool) -> Verdict {
    Verdict::Proceed { acked: acked.map(str::to_owned), respond }
}

/// Runs requests through one type's state. Each step gives the request, the current snapshot
/// version, the expected verdict, and whether the server then sends the snapshot (as `send`
/// does: the nonce is "n" followed by the step number).
fn check(steps: &[(DiscoveryRequest, Option<&str>, Verdict)]) {
    let mut state = TypeState::default();
    for (i, (request, snapshot_version, expected)) in steps.iter().enumerate() {
        let verdict = state.on_request(request, *snapshot_version);
        assert_eq!(&verdict, expected, "step {i}: {request:?}");
        if let (Verdict::Proceed { respond: true, .. }, Some(v)) = (&verdict, snapshot_version) {
            state.last_nonce = Some(format!("n{i}"));
            state.sent_version = Some((*v).to_owned());
            state.sent_names = state.names.clone();
        }
    }
}

#[test]
fn decision_initial_ack_and_push() {
    check(&[
        // Empty initial request: answered.
        (req(CLUSTER_TYPE, "", "", &[]), Some("1"), proceed(None, true)),
        // ACK of what was sent: recorded, not answered.
        (req(CLUSTER_TYPE, "1", "n0", &[]), Some("1"), proceed(Some("1"), false)),
        // Same ACK again once a newer snapshot exists (the push raced it): answered.
        (req(CLUSTER_TYPE, "1", "n0", &[]), Some("2"), proceed(Some("1"), true)),
        // An ACK to the older nonce now is stale.
        (req(CLUSTER_TYPE, "1", "n0", &[]), Some("2"), Verdict::Stale),
        (req(CLUSTER_TYPE, "2", "n2", &[]), Some("2"), proceed(Some("2"), false)),
    ]);
}

#[test]
fn decision_initial_request_with_version_is_answered() {
    // Envoy reconnecting sends the version it runs; the first request is answered anyway,
    // and its nonce (from another stream) means nothing here.
    check(&[(req(ROUTE_TYPE, "7", "other-stream-3", &["r"]), Some("7"), proceed(None, true))]);
}

#[test]
fn decision_without_snapshot_waits() {
    check(&[
        (req(CLUSTER_TYPE, "", "", &[]), None, proceed(None, true)),
        // Nothing was sent, so a second request is still fresh.
        (req(CLUSTER_TYPE, "", "", &[]), None, proceed(None, true)),
    ]);
}

#[test]
fn decision_nack_is_not_answered() {
    check(&[
        (req(ROUTE_TYPE, "", "", &["r"]), Some("1"), proceed(None, true)),
        (nack(req(ROUTE_TYPE, "", "n0", &["r"]), "bad"), Some("1"), Verdict::Nack { rejected: "1".into(), message: "bad".into() }),
        // Envoy's next request after a NACK carries no error_detail but still the old
        // version: not an ACK, and nothing new to send.
        (req(ROUTE_TYPE, "", "n0", &["r"]), Some("1"), proceed(None, false)),
        // A new snapshot is sent.
        (req(ROUTE_TYPE, "", "n0", &["r"]), Some("2"), proceed(None, true)),
    ]);
}

#[test]
fn decision_names_change() {
    check(&[
        (req(ROUTE_TYPE, "", "", &["a"]), Some("1"), proceed(None, true)),
        // Same set in another order: nothing new.
        (req(ROUTE_TYPE, "1", "n0", &["a"]), Some("1"), proceed(Some("1"), false)),
        // A new name: answered although the version is current.
        (req(ROUTE_TYPE, "1", "n0", &["b", "a"]), Some("1"), proceed(Some("1"), true)),
        (req(ROUTE_TYPE, "1", "n2", &["a", "b"]), Some("1"), proceed(Some("1"), false)),
    ]);
    // Clusters are whole whatever the names, so names never trigger a response.
    check(&[
        (req(CLUSTER_TYPE, "", "", &[]), Some("1"), proceed(None, true)),
        (req(CLUSTER_TYPE, "1", "n0", &["x"]), Some("1"), proceed(Some("1"), false)),
    ]);
}

#[test]
fn response_filters_by_name_except_clusters_and_listeners() {
    let snapshot = test_snapshot("1", &["c1", "c2"], &["r1", "r2"]);
    let names = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<BTreeSet<_>>();
    let check = |type_url: &str, asked: &[&str], expected: &[&str]| {
        let response = build_response(&snapshot, type_url, &names(asked), "n".into());
        assert_eq!(response.type_url, type_url);
        assert_eq!(response.version_info, "1");
        assert_eq!(response.nonce, "n");
        assert_eq!(resource_names(&response), expected, "{type_url} {asked:?}");
    };
    check(CLUSTER_TYPE, &[], &["c1", "c2"]);
    check(CLUSTER_TYPE, &["c1"], &["c1", "c2"]);
    check(ROUTE_TYPE, &[], &["r1", "r2"]);
    check(ROUTE_TYPE, &["r2", "missing"], &["r2"]);
    check(LISTENER_TYPE, &["nope"], &[]);
    check(EXTENSION_CONFIG_TYPE, &[], &[]);
}

// ---------------------------------------------------------------------------------------
// Over loopback.

fn cluster(name: &str) -> (String, Any) {
    let c = Cluster { name: name.into(), ..Default::default() };
    (name.into(), pack_any(c))
}

fn route(name: &str) -> (String, Any) {
    let r = RouteConfiguration { name: name.into(), ..Default::default() };
    (name.into(), pack_any(r))
}

fn test_snapshot(version: &str, clusters: &[&str], routes: &[&str]) -> Snapshot {
    Snapshot::new(version)
        .with_resources(CLUSTER_TYPE, clusters.iter().map(|n| cluster(n)).collect())
        .with_resources(ROUTE_TYPE, routes.iter().map(|n| route(n)).collect())
}

/// The names inside a response, decoded from the packed resources.
fn resource_names(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|any| {
            assert_eq!(any.type_url, response.type_url, "resource of another type");
            let bytes = any.value.as_slice();
            match any.type_url.as_str() {
                CLUSTER_TYPE => Cluster::decode(bytes).unwrap().name,
                ROUTE_TYPE => RouteConfiguration::decode(bytes).unwrap().name,
                LISTENER_TYPE => Listener::decode(bytes).unwrap().name,
                other => panic!("unexpected type {other}"),
            }
        })
        .collect()
}

async fn serve(cache: SnapshotCache) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tonic::transport::Server::builder().add_service(AdsServer::new(cache).service()).serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(async move { server.await.unwrap() });
    addr
}

async fn client(addr: SocketAddr) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A tonic client speaking ADS the way Envoy does.
struct FakeEnvoy {
    node: String,
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: Streaming<DiscoveryResponse>,
}

impl FakeEnvoy {
    async fn connect(addr: SocketAddr, node: &str) -> Self {
        let (requests, rx) = mpsc::channel(16);
        let responses = client(addr).await.stream_aggregated_resources(ReceiverStream::new(rx)).await.unwrap().into_inner();
        Self { node: node.into(), requests, responses }
    }

    async fn send(&self, mut request: DiscoveryRequest) {
        request.node = Some(Node { id: self.node.clone(), ..Default::default() });
        self.requests.send(request).await.unwrap();
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        timeout(WAIT, self.responses.message())
            .await
            .expect("no response from the ADS server")
            .expect("stream error")
            .expect("stream ended")
    }

    /// Sends a request that is always answered, and returns that answer: every request sent
    /// before it has been handled by then.
    async fn barrier(&mut self) {
        self.send(req(LISTENER_TYPE, "", "", &[])).await;
        let response = self.recv().await;
        assert_eq!(response.type_url, LISTENER_TYPE, "an earlier request was answered: {response:?}");
    }
}

fn type_status(cache: &SnapshotCache, node: &str, type_url: &str) -> TypeStatus {
    let status = cache.status();
    let node = status.iter().find(|n| n.node_id == node).unwrap_or_else(|| panic!("node {node} not in {status:?}"));
    node.types.iter().find(|t| t.type_url == type_url).cloned().unwrap_or_else(|| panic!("type {type_url} not in {node:?}"))
}

#[tokio::test]
async fn serves_acks_nacks_pushes_and_ignores_stale() {
    let cache = SnapshotCache::new();
    cache.set(test_snapshot("v1", &["c1", "c2"], &["r1", "r2"]));
    let addr = serve(cache.clone()).await;
    let mut envoy = FakeEnvoy::connect(addr, "envoy-1").await;

    // Initial requests: clusters whole, routes filtered by name.
    envoy.send(req(CLUSTER_TYPE, "", "", &[])).await;
    let clusters = envoy.recv().await;
    assert_eq!(clusters.type_url, CLUSTER_TYPE);
    assert_eq!(clusters.version_info, "v1");
    assert_eq!(resource_names(&clusters), ["c1", "c2"]);

    envoy.send(req(ROUTE_TYPE, "", "", &["r1"])).await;
    let routes = envoy.recv().await;
    assert_eq!(routes.type_url, ROUTE_TYPE);
    assert_eq!(routes.version_info, "v1");
    assert_eq!(resource_names(&routes), ["r1"]);
    assert_ne!(routes.nonce, clusters.nonce);

    // ACK clusters: recorded, and not answered.
    envoy.send(req(CLUSTER_TYPE, "v1", &clusters.nonce, &[])).await;
    envoy.barrier().await;
    let status = type_status(&cache, "envoy-1", CLUSTER_TYPE);
    assert_eq!(status.last_sent_version.as_deref(), Some("v1"));
    assert_eq!(status.last_acked_version.as_deref(), Some("v1"));
    assert!(status.last_acked_at.is_some_and(|at| at <= std::time::SystemTime::now()), "the ACK's time is recorded");
    assert_eq!(status.last_nack, None);
    assert!(cache.status()[0].connected);

    // NACK routes: recorded, and the rejected version is not sent again.
    envoy.send(nack(req(ROUTE_TYPE, "", &routes.nonce, &["r1"]), "route r1 is bad")).await;
    envoy.barrier().await;
    // Envoy follows a NACK with the same request without error_detail; still no resend.
    envoy.send(req(ROUTE_TYPE, "", &routes.nonce, &["r1"])).await;
    envoy.barrier().await;
    let status = type_status(&cache, "envoy-1", ROUTE_TYPE);
    let nack = status.last_nack.expect("NACK recorded");
    assert_eq!(nack.version, "v1");
    assert_eq!(nack.error, "route r1 is bad");
    assert_eq!((status.last_acked_version, status.last_acked_at), (None, None));

    // A new snapshot is pushed to every subscribed type, clusters first.
    cache.set(test_snapshot("v2", &["c1", "c3"], &["r1", "r2"]));
    let pushed: Vec<DiscoveryResponse> = vec![envoy.recv().await, envoy.recv().await, envoy.recv().await];
    let order: Vec<&str> = pushed.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(order, [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE]);
    assert!(pushed.iter().all(|r| r.version_info == "v2"));
    assert_eq!(resource_names(&pushed[0]), ["c1", "c3"]);
    assert_eq!(resource_names(&pushed[2]), ["r1"]);
    let routes_v2 = &pushed[2];

    // A request with the nonce of the v1 routes is stale. It asks for a new name, which would
    // be answered if it were current.
    envoy.send(req(ROUTE_TYPE, "", &routes.nonce, &["r1", "r2"])).await;
    envoy.barrier().await;

    // The same request with the current nonce (an ACK of v2 that adds a name) is answered
    // with the new set.
    envoy.send(req(ROUTE_TYPE, "v2", &routes_v2.nonce, &["r1", "r2"])).await;
    let routes_both = envoy.recv().await;
    assert_eq!(routes_both.type_url, ROUTE_TYPE);
    assert_eq!(routes_both.version_info, "v2");
    assert_eq!(resource_names(&routes_both), ["r1", "r2"]);
    envoy.barrier().await;
    let status = type_status(&cache, "envoy-1", ROUTE_TYPE);
    assert_eq!(status.last_acked_version.as_deref(), Some("v2"));
    // The last NACK stays visible after a later ACK.
    assert_eq!(status.last_nack.map(|n| n.version).as_deref(), Some("v1"));
}

#[tokio::test]
async fn waits_for_the_first_snapshot() {
    let cache = SnapshotCache::new();
    let addr = serve(cache.clone()).await;
    let mut envoy = FakeEnvoy::connect(addr, "envoy-early").await;
    // Subscribed in the reverse of the push order, so the order seen below is the server's.
    envoy.send(req(ROUTE_TYPE, "", "", &["r1"])).await;
    envoy.send(req(LISTENER_TYPE, "", "", &[])).await;
    envoy.send(req(EXTENSION_CONFIG_TYPE, "", "", &["missing"])).await;
    envoy.send(req(CLUSTER_TYPE, "", "", &[])).await;
    // Wait until all four requests were handled before the snapshot exists; otherwise the
    // answers below would not prove that nothing is sent without a snapshot.
    wait_until(|| cache.status().first().is_some_and(|n| n.types.len() == 4 && n.types.iter().all(|t| t.last_sent_version.is_none())))
        .await;

    cache.set(test_snapshot("v1", &["c1"], &["r1", "r2"]));
    let mut pushed = Vec::new();
    for _ in 0..4 {
        pushed.push(envoy.recv().await);
    }
    let order: Vec<&str> = pushed.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(order, [CLUSTER_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, ROUTE_TYPE]);
    assert!(pushed.iter().all(|r| r.version_info == "v1"));
    assert_eq!(resource_names(&pushed[0]), ["c1"]);
    // Types the snapshot has none of are answered with an empty set.
    assert!(pushed[1].resources.is_empty());
    assert!(pushed[2].resources.is_empty());
    assert_eq!(resource_names(&pushed[3]), ["r1"]);
}

#[tokio::test]
async fn stream_end_marks_node_disconnected() {
    let cache = SnapshotCache::new();
    cache.set(test_snapshot("v1", &["c1"], &[]));
    let addr = serve(cache.clone()).await;
    let mut envoy = FakeEnvoy::connect(addr, "envoy-gone").await;
    envoy.send(req(CLUSTER_TYPE, "", "", &[])).await;
    envoy.recv().await;
    assert!(cache.status()[0].connected);
    drop(envoy);
    wait_until(|| cache.status().first().is_some_and(|n| !n.connected)).await;
    assert_eq!(cache.status()[0].node_id, "envoy-gone");
}

#[tokio::test]
async fn delta_is_unimplemented() {
    let addr = serve(SnapshotCache::new()).await;
    let status = client(addr)
        .await
        .delta_aggregated_resources(futures::stream::iter(Vec::<DeltaDiscoveryRequest>::new()))
        .await
        .expect_err("delta must be refused");
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("DELTA_GRPC"), "{}", status.message());
}

#[tokio::test]
async fn messages_above_tonic_default_limit_pass() {
    // tonic refuses messages above 4 MiB unless told otherwise; both directions must pass.
    let big = "x".repeat(5 * 1024 * 1024);
    let cache = SnapshotCache::new();
    cache.set(test_snapshot("v1", &[], &[big.as_str()]));
    let addr = serve(cache.clone()).await;
    let mut envoy = FakeEnvoy::connect(addr, "envoy-big").await;
    envoy.send(req(ROUTE_TYPE, "", "", &[big.as_str()])).await;
    let routes = envoy.recv().await;
    assert_eq!(resource_names(&routes), [big]);
}

/// Polls a condition the server reaches on its own (no request to wait on). The timeout only
/// stops a hang.
async fn wait_until(mut condition: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition not reached");
}

#[test]
fn a_rejected_filter_is_sent_again_further_and_further_apart_then_left() {
    let delays: Vec<Duration> = (0..).map_while(retry_delay).collect();
    assert_eq!(delays.first(), Some(&Duration::from_millis(20)));
    assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
    assert!(delays.iter().all(|d| *d <= Duration::from_secs(30)));
    assert!(delays.len() < 20, "it gives up");
    assert!(vm_not_made(EXTENSION_CONFIG_TYPE, "Unable to create Wasm plugin mcp"));
    assert!(!vm_not_made(EXTENSION_CONFIG_TYPE, "Error: filter config has type URL x but expect y."));
    assert!(!vm_not_made(ROUTE_TYPE, "Unable to create Wasm plugin mcp"));
}

/// What Envoy answers while it fetches the module: a NACK that says the VM could not be made.
/// The configuration comes again, marked (Envoy would ignore the same bytes), and its ACK
/// ends the retries; any other NACK is not answered.
#[tokio::test]
async fn a_filter_rejected_while_its_module_is_fetched_comes_again() {
    let filter = crate::compile::filter_for_tests();
    let cache = SnapshotCache::new();
    cache.set(Snapshot::new("v1").with_resources(EXTENSION_CONFIG_TYPE, vec![("f".into(), filter.clone())]));
    let addr = serve(cache.clone()).await;
    let mut envoy = FakeEnvoy::connect(addr, "envoy-fetching").await;
    envoy.send(req(EXTENSION_CONFIG_TYPE, "", "", &["f"])).await;
    let first = envoy.recv().await;
    assert_eq!(first.resources, vec![filter.clone()]);

    envoy.send(nack(req(EXTENSION_CONFIG_TYPE, "", &first.nonce, &["f"]), "Unable to create Wasm plugin mcp")).await;
    let again = envoy.recv().await;
    assert_eq!((again.type_url.as_str(), again.version_info.as_str()), (EXTENSION_CONFIG_TYPE, "v1"));
    assert_ne!(again.nonce, first.nonce);
    assert_eq!(again.resources, vec![crate::compile::sent_again(&filter, 1).unwrap()]);

    envoy.send(req(EXTENSION_CONFIG_TYPE, "v1", &again.nonce, &["f"])).await;
    envoy.barrier().await;
    let status = type_status(&cache, "envoy-fetching", EXTENSION_CONFIG_TYPE);
    assert_eq!((status.last_acked_version.as_deref(), status.nacks, status.sent), (Some("v1"), 1, 2));

    // Another reason: not sent again (the barrier's answer comes next, nothing before it).
    cache.set(Snapshot::new("v2").with_resources(EXTENSION_CONFIG_TYPE, vec![("f".into(), filter.clone())]));
    let v2 = envoy.recv().await;
    envoy.send(nack(req(EXTENSION_CONFIG_TYPE, "v1", &v2.nonce, &["f"]), "Error: filter config has type URL x")).await;
    envoy.barrier().await;
    // Past the first retry's delay, still nothing came before the next barrier's answer.
    tokio::time::sleep(retry_delay(0).unwrap() * 3).await;
    envoy.barrier().await;
}
