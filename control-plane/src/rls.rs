//! The rate limit service (`envoy.service.ratelimit.v3`) behind global
//! limits: Envoy's `ratelimit` filter asks it about each request the MCP
//! filter named buckets for, and it takes tokens from buckets kept in
//! Redis, so that every Envoy (and every control plane) shares them.
//!
//! A bucket is a Redis hash refilled and taken from by one Lua script, with
//! Redis's own clock: the check is atomic, and replicas with skewed clocks
//! agree. The arithmetic is the same as the filter's local buckets
//! (`mcp_filter::ratelimit`), in fractional tokens.
//!
//! It never decides which limits exist: it reads them from the configuration
//! published, and only takes tokens.

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{RateLimitService, RateLimitServiceServer};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use mcp_filter::config::RateLimit;
use tonic::{Request, Response, Status};

use crate::compile::rls_error_header;
use crate::state::Current;

/// Refill, then take `hits` tokens if there are enough. KEYS[1]: the
/// bucket; ARGV: tokens per minute, burst, hits. Returns {taken, retry_ms}.
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local per_ms = tonumber(ARGV[1]) / 60000
local burst = tonumber(ARGV[2])
local hits = tonumber(ARGV[3])
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(stored[1]) or burst
local at = tonumber(stored[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * per_ms)
  at = now
end
local taken, retry = 0, 0
if tokens >= hits then
  tokens = tokens - hits
  taken = 1
else
  retry = math.ceil((hits - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / per_ms) + 1000)
return {taken, retry}
"#;

pub struct Rls {
    /// The configuration served: its global limits.
    current: Current,
    /// The connection, and the URL it is for (the catalog may change it).
    redis: tokio::sync::Mutex<Option<(String, redis::aio::ConnectionManager)>>,
    script: redis::Script,
}

impl Rls {
    pub fn new(current: Current) -> Self {
        Rls { current, redis: tokio::sync::Mutex::new(None), script: redis::Script::new(TAKE) }
    }

    pub fn service(self) -> RateLimitServiceServer<Rls> {
        RateLimitServiceServer::new(self)
    }

    async fn connection(&self, url: &str) -> Result<redis::aio::ConnectionManager, String> {
        let mut slot = self.redis.lock().await;
        if let Some((current, conn)) = slot.as_ref() {
            if current == url {
                return Ok(conn.clone());
            }
        }
        let client = redis::Client::open(url).map_err(|e| format!("redis url: {e}"))?;
        let conn = redis::aio::ConnectionManager::new(client).await.map_err(|e| format!("cannot reach redis: {e}"))?;
        *slot = Some((url.to_string(), conn.clone()));
        Ok(conn)
    }

    /// Takes from one bucket: `Ok(None)` when taken, `Ok(Some(retry_ms))` when empty.
    async fn take(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        limit: &RateLimit,
        bucket: &str,
        hits: u32,
    ) -> Result<Option<u64>, String> {
        let (taken, retry): (i64, i64) = self
            .script
            .key(bucket)
            .arg(limit.requests_per_minute)
            .arg(limit.burst)
            .arg(hits)
            .invoke_async(conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        Ok((taken == 0).then_some(retry.max(0) as u64))
    }
}

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(&self, request: Request<RateLimitRequest>) -> Result<Response<RateLimitResponse>, Status> {
        let request = request.into_inner();
        let global = self.current.get().map(|p| std::sync::Arc::clone(&p.global_limits)).unwrap_or_default();
        let url = global.redis_url.as_deref().ok_or_else(|| Status::failed_precondition("no gateway.global_rate_limits configured"))?;
        let mut conn = self.connection(url).await.map_err(|e| {
            tracing::warn!(error = %e, "rate limit service cannot reach redis");
            Status::unavailable(e)
        })?;
        let hits = request.hits_addend.max(1);
        let mut statuses = Vec::with_capacity(request.descriptors.len());
        let mut refused: Option<(&RateLimit, u64)> = None;
        for d in &request.descriptors {
            let entry = |key: &str| d.entries.iter().find(|e| e.key == key).map(|e| e.value.as_str());
            let (Some(name), Some(bucket)) = (entry("limit"), entry("bucket")) else {
                statuses.push(DescriptorStatus { code: Code::Ok as i32, ..Default::default() });
                continue;
            };
            // A limit dropped from the catalog since Envoy's route was built.
            let Some(limit) = global.limits.get(name) else {
                statuses.push(DescriptorStatus { code: Code::Ok as i32, ..Default::default() });
                continue;
            };
            let outcome = self.take(&mut conn, limit, bucket, hits).await.map_err(|e| {
                tracing::warn!(error = %e, "rate limit service: redis failed");
                Status::unavailable(e)
            })?;
            let code = if outcome.is_some() { Code::OverLimit } else { Code::Ok };
            statuses.push(DescriptorStatus { code: code as i32, ..Default::default() });
            if let (Some(retry_ms), None) = (outcome, &refused) {
                refused = Some((limit, retry_ms));
            }
        }
        let Some((limit, retry_ms)) = refused else {
            return Ok(Response::new(RateLimitResponse { overall_code: Code::Ok as i32, statuses, ..Default::default() }));
        };
        let retry_after = retry_ms.div_ceil(1000).max(1);
        let error = mcp_filter::gateway::rate_limit_error(limit, retry_after);
        let header = |key: &str, value: String| HeaderValue { key: key.into(), value, ..Default::default() };
        Ok(Response::new(RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses,
            response_headers_to_add: vec![header("retry-after", retry_after.to_string()), header(rls_error_header(), error)],
            ..Default::default()
        }))
    }
}
