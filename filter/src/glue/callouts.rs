//! The filter's own requests (callouts): sent through Envoy's cluster
//! manager, each answered in `on_http_call_response` by its token.

use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::traits::Context;

use super::Request;
use crate::decision::Callout;
use crate::gateway::Gateway;

impl Request {
    /// Sends each callout; returns the tokens of those that went out.
    pub(super) fn dispatch(&self, gw: &Gateway, callouts: &[Callout], timeout: Duration) -> HashMap<u32, usize> {
        let mut tokens = HashMap::with_capacity(callouts.len());
        for (i, c) in callouts.iter().enumerate() {
            let mut headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(server) = gw.server(c.server) {
                headers.extend(server.headers.iter().map(|h| (h.name.as_str(), h.value.as_str())));
            }
            match self.dispatch_http_call(&c.cluster, headers, Some(&c.body), vec![], timeout) {
                Ok(token) => {
                    tokens.insert(token, i);
                }
                Err(status) => log::warn!("mcp filter: call to cluster {} failed to start: {status:?}", c.cluster),
            }
        }
        tokens
    }

    pub(super) fn timeout(gw: &Gateway) -> Duration {
        Duration::from_millis(gw.config().upstream_timeout_ms)
    }
}
