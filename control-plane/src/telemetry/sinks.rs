//! The gRPC services the Envoys push to, on the control plane's xDS port
//! (cluster `xds` in their bootstrap): Envoy's metrics service (its stats
//! every flush interval) and access log service (the audit log's
//! decisions). Both streams only flow from Envoy; a message that cannot be
//! read is skipped. A node's figures last as long as its metrics stream:
//! an Envoy that goes away (a replica scaled down) stops counting in the
//! sums. Messages may be as large as the xDS ones ([`MAX_MESSAGE_BYTES`]):
//! an Envoy's stats grow with the catalog.

use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::{AccessLogService, AccessLogServiceServer};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{StreamAccessLogsMessage, StreamAccessLogsResponse};
use envoy_types::pb::envoy::service::metrics::v3::metrics_service_server::{MetricsService, MetricsServiceServer};
use envoy_types::pb::envoy::service::metrics::v3::{StreamMetricsMessage, StreamMetricsResponse};
use tonic::{Request, Response, Status, Streaming};

use super::{audit_entry, tool_figures, Telemetry};
use crate::ads::MAX_MESSAGE_BYTES;

/// Receives both streams into one [`Telemetry`].
#[derive(Clone)]
pub struct Sinks(pub Telemetry);

impl Sinks {
    pub fn metrics_service(&self) -> MetricsServiceServer<Sinks> {
        MetricsServiceServer::new(self.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn access_log_service(&self) -> AccessLogServiceServer<Sinks> {
        AccessLogServiceServer::new(self.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// A metrics stream being read, and the node it is of.
struct OpenStream {
    telemetry: Telemetry,
    number: u64,
    node: String,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.telemetry.stream_ended(&self.node, self.number);
    }
}

#[tonic::async_trait]
impl MetricsService for Sinks {
    async fn stream_metrics(&self, request: Request<Streaming<StreamMetricsMessage>>) -> Result<Response<StreamMetricsResponse>, Status> {
        let mut stream = request.into_inner();
        // Forgets the node's figures when this handler ends, however it
        // does: an error, the stream's end, or its future dropped on a reset.
        let mut open = OpenStream { telemetry: self.0.clone(), number: self.0.stream_opened(), node: String::new() };
        while let Some(message) = stream.message().await? {
            // The node is named in the stream's first message only.
            if let Some(id) = message.identifier.as_ref().and_then(|i| i.node.as_ref()).map(|n| n.id.clone()) {
                open.node = id;
            }
            open.telemetry.record_figures(&open.node, open.number, tool_figures(&message.envoy_metrics));
        }
        Ok(Response::new(StreamMetricsResponse {}))
    }
}

#[tonic::async_trait]
impl AccessLogService for Sinks {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut node = String::new();
        while let Some(message) = stream.message().await? {
            if let Some(id) = message.identifier.as_ref().and_then(|i| i.node.as_ref()).map(|n| n.id.clone()) {
                node = id;
            }
            let Some(LogEntries::HttpLogs(logs)) = message.log_entries else { continue };
            for entry in &logs.log_entry {
                if let Some(decision) = audit_entry(&node, entry) {
                    self.0.record_decision(decision);
                }
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}
