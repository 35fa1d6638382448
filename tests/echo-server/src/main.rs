//! `mcp-echo-server`: a tiny MCP server over Streamable HTTP that the gateway's
//! end-to-end tests and benchmarks put behind Envoy.
//!
//! It serves four tools, built with rmcp's `#[tool_router]` macros:
//!
//! - `echo { text }` returns `text` as a single text content block;
//! - `add { a, b }` returns the sum as text (`"5"` for `2 + 3`);
//! - `whoami {}` returns the `--name` given on the command line, so a test can
//!   tell which upstream answered;
//! - `sleep { ms }` answers `"slept"` after `ms` milliseconds (at most a
//!   minute), for timeout tests.
//!
//! `--extra-tools N` adds `tool_0 .. tool_{N-1}`, copies of `echo`, to make
//! `tools/list` as large as a benchmark needs.
//!
//! `--modern-only` refuses `initialize` and requests of older revisions, as a
//! server built for the stateless 2026-07-28 revision alone would.
//!
//! `--dynamic` adds `grow { name }`, which adds a copy of `echo` named `name`
//! at runtime and sends `notifications/tools/list_changed` to every session
//! (with `--stateful`, on each session's GET stream), and
//! `redescribe { name, description }`, which rewrites a tool's description
//! the same way (a server changing a tool behind its users' back: the
//! gateway's pinned definitions must see it).
//!
//! By default rmcp serves the endpoint statelessly (no `Mcp-Session-Id`, and a
//! plain `application/json` body whenever a request needs only one answer);
//! `--stateful` turns on rmcp's legacy session mode, which issues session ids
//! and answers over SSE.
//!
//! Whatever the mode, rmcp serves requests that negotiate protocol `2026-07-28`
//! (per-request `_meta`, no `initialize`) statelessly; the mode only changes
//! how the `initialize`-era versions are served.
//!
//! `--tls-cert FILE --tls-key FILE` serves HTTPS instead (rustls), and
//! `--tls-client-ca FILE` then requires a client certificate signed by one of
//! those CAs (mTLS): the gateway's tests of `https://` upstreams use them.
//!
//! `--require-jwt-audience AUD --jwt-hs256-secret SECRET [--jwt-issuer ISS]`
//! refuses (401) every request without a valid HS256 JWT for `AUD` (checked by
//! hand: HMAC-SHA256, `exp`, `nbf`, `aud`, `iss`), as an upstream that trusts
//! an authorization server does, and adds `token_claims {}`, which returns the
//! verified token's claims as JSON. `--resource-metadata-as URL` serves the
//! RFC 9728 metadata naming that authorization server and names it in every
//! 401 challenge. `--record-auth FILE` appends the Authorization header of
//! every request received (`-` without one) to FILE, so that a test can tell
//! exactly what reached the server.
//!
//! The server prints `listening on http://127.0.0.1:PORT/PATH` (or `https://`)
//! on stdout once the socket is bound, and exits cleanly on SIGTERM or ctrl-c.
//! It binds loopback unless told otherwise (`--bind`, for the compose file's
//! echo service, alone in its container): it is a test fixture, not a service.

use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use clap::Parser;
use rmcp::{
    handler::server::{
        router::tool::{ToolRoute, ToolRouter},
        wrapper::Parameters,
    },
    model::{Implementation, ServerCapabilities, ServerConfig},
    schemars,
    service::{NotificationContext, Peer, RequestContext},
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService},
    RoleServer, ServerHandler,
};
use tokio_util::sync::CancellationToken;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(version, about = "A tiny MCP server over Streamable HTTP for tests")]
struct Args {
    /// TCP port to listen on; 0 picks a free port.
    #[arg(long, default_value_t = 8101)]
    port: u16,
    /// Address to listen on: loopback unless a container's network needs
    /// another (docker-compose.yml's echo service binds 0.0.0.0).
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// HTTP path of the MCP endpoint.
    #[arg(long, default_value = "/mcp")]
    path: String,
    /// Issue `Mcp-Session-Id`s (rmcp's legacy session mode) instead of serving
    /// every request on its own.
    #[arg(long)]
    stateful: bool,
    /// Add N generated tools `tool_0 .. tool_{N-1}` that each echo `text`.
    #[arg(long, default_value_t = 0)]
    extra_tools: usize,
    /// The `serverInfo.name` to report, also returned by the `whoami` tool.
    #[arg(long, default_value = "echo")]
    name: String,
    /// Also accept this `Host` header (a name, or `name:port`). Repeatable.
    /// rmcp accepts only loopback names by default, against DNS rebinding, so
    /// a proxy that rewrites `Host` to an upstream name needs this.
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// Accept any `Host` header.
    #[arg(long, conflicts_with = "allowed_hosts")]
    any_host: bool,
    /// Offer `grow { name }`, which adds a tool at runtime and tells every
    /// session that the tool list changed.
    #[arg(long)]
    dynamic: bool,
    /// Speak only the stateless 2026-07-28 revision, as servers built for it
    /// alone do: `initialize` and requests of older revisions are refused.
    #[arg(long, conflicts_with = "stateful")]
    modern_only: bool,
    /// Refuse (HTTP 401) every request without `Authorization: Bearer <TOKEN>`,
    /// as a server holding its own credentials does.
    #[arg(long, value_name = "TOKEN")]
    require_bearer: Option<String>,
    /// With `--require-bearer`: only `tools/call` needs the token, as
    /// servers that list their tools to anyone but call them for their
    /// users only do.
    #[arg(long, requires = "require_bearer")]
    bearer_for_calls_only: bool,
    /// The `WWW-Authenticate` challenge of a `--require-bearer` refusal
    /// (default `Bearer`; `--resource-metadata-as` adds its parameter).
    #[arg(long, value_name = "VALUE", default_value = "Bearer")]
    challenge: String,
    /// Refuse (HTTP 401, RFC 6750) every request without `Authorization:
    /// Bearer <JWT>`: an HS256 JWT signed with `--jwt-hs256-secret`, unexpired,
    /// whose `aud` is (or contains) AUD. Adds the tool `token_claims`.
    #[arg(long, value_name = "AUD", requires = "jwt_hs256_secret", conflicts_with = "require_bearer")]
    require_jwt_audience: Option<String>,
    /// The HMAC key of `--require-jwt-audience`'s tokens.
    #[arg(long, value_name = "SECRET", requires = "require_jwt_audience")]
    jwt_hs256_secret: Option<String>,
    /// With `--require-jwt-audience`: the tokens' `iss` must be ISS.
    #[arg(long, value_name = "ISS", requires = "require_jwt_audience")]
    jwt_issuer: Option<String>,
    /// Serve RFC 9728 protected resource metadata naming URL as the
    /// authorization server, at `/.well-known/oauth-protected-resource<path>`
    /// (and without the path), and name it in every 401 challenge
    /// (`resource_metadata=`). Refuses nothing by itself.
    #[arg(long, value_name = "URL")]
    resource_metadata_as: Option<String>,
    /// Append one line per HTTP request received to FILE: its Authorization
    /// header as received (several joined by ", "), or `-` without one.
    #[arg(long, value_name = "FILE")]
    record_auth: Option<std::path::PathBuf>,
    /// Offer `authorization`, which returns the Authorization header the
    /// request arrived with, and `header`, any header's value (to show what
    /// a gateway passes on).
    #[arg(long)]
    show_auth: bool,
    /// Serve HTTPS with this PEM certificate chain (and `--tls-key`).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Require a client certificate signed by one of these PEM CAs (mTLS):
    /// a client without one fails the handshake.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
}

/// Arguments of `echo` and of the generated `tool_N` tools.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

/// Arguments of `add`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// The left operand.
    a: serde_json::Number,
    /// The right operand.
    b: serde_json::Number,
}

/// Arguments of `grow`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct GrowArgs {
    /// The new tool's name.
    name: String,
}

/// Arguments of `redescribe`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct RedescribeArgs {
    /// The tool whose description changes.
    name: String,
    /// Its new description.
    description: String,
}

/// Arguments of `header`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct HeaderArgs {
    /// The header's name.
    name: String,
}

/// Arguments of `sleep`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct SleepArgs {
    /// How long to wait before answering, in milliseconds (at most 60000).
    ms: u64,
}

/// The MCP service. rmcp asks for one per session (or per request when
/// stateless), so it is built once and cloned: every field is an `Arc`.
#[derive(Clone)]
struct EchoServer {
    name: Arc<str>,
    /// Swapped whole when `grow` adds a tool; requests clone the `Arc`.
    tool_router: Arc<RwLock<Arc<ToolRouter<Self>>>>,
    /// Every session's peer, for `grow`'s notification (`--dynamic` only).
    peers: Option<Arc<Mutex<Vec<Peer<RoleServer>>>>>,
}

#[tool_router]
impl EchoServer {
    fn new(name: Arc<str>, extra_tools: usize, dynamic: bool, show_auth: bool, token_claims: bool) -> Self {
        let mut tool_router = Self::tool_router();
        if !dynamic {
            tool_router.remove_route("grow");
            tool_router.remove_route("redescribe");
        }
        if !show_auth {
            tool_router.remove_route("authorization");
            tool_router.remove_route("header");
        }
        if !token_claims {
            tool_router.remove_route("token_claims");
        }
        for i in 0..extra_tools {
            // Reuse `echo`'s schema and handler so the generated tools behave
            // exactly like it and differ only in name.
            let mut attr = Self::echo_tool_attr();
            attr.name = format!("tool_{i}").into();
            attr.description = Some(format!("Generated tool {i}: returns `text` unchanged").into());
            tool_router.add_route(ToolRoute::new(attr, Self::echo));
        }
        Self { name, tool_router: Arc::new(RwLock::new(Arc::new(tool_router))), peers: dynamic.then(Default::default) }
    }

    /// Sends `notifications/tools/list_changed` to every session; returns how
    /// many took it.
    async fn tell_list_changed(&self) -> usize {
        let peers = self.peers.as_ref().and_then(|p| p.lock().ok().map(|p| p.clone())).unwrap_or_default();
        let mut told = 0;
        for peer in peers {
            if peer.notify_tool_list_changed().await.is_ok() {
                told += 1;
            }
        }
        told
    }

    /// The tools as they are now.
    fn router(&self) -> Arc<ToolRouter<Self>> {
        match self.tool_router.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    #[tool(description = "Add a copy of `echo` named `name`, and tell every session the tool list changed")]
    async fn grow(&self, Parameters(GrowArgs { name }): Parameters<GrowArgs>) -> String {
        let mut attr = Self::echo_tool_attr();
        attr.name = name.clone().into();
        if let Ok(mut current) = self.tool_router.write() {
            let mut grown = ToolRouter::clone(&current);
            grown.add_route(ToolRoute::new(attr, Self::echo));
            *current = Arc::new(grown);
        }
        let told = self.tell_list_changed().await;
        format!("added {name}; told {told} sessions")
    }

    #[tool(description = "Change the description of tool `name`, and tell every session the tool list changed")]
    async fn redescribe(&self, Parameters(RedescribeArgs { name, description }): Parameters<RedescribeArgs>) -> String {
        let mut found = false;
        if let Ok(mut current) = self.tool_router.write() {
            let mut changed = ToolRouter::clone(&current);
            if let Some(route) = changed.map.get_mut(name.as_str()) {
                route.attr.description = Some(description.into());
                found = true;
            }
            *current = Arc::new(changed);
        }
        if !found {
            return format!("no tool {name}");
        }
        let told = self.tell_list_changed().await;
        format!("redescribed {name}; told {told} sessions")
    }

    #[tool(description = "Return `text` unchanged")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Return the sum of the numbers `a` and `b`")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        sum(&a, &b)
    }

    #[tool(description = "Return the Authorization header this request arrived with, or \"none\"")]
    fn authorization(&self, context: RequestContext<RoleServer>) -> String {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get("authorization"))
            .map_or_else(|| "none".to_string(), |v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    #[tool(description = "Return the values of header `name` this request arrived with, comma-separated, or \"none\"")]
    fn header(&self, Parameters(HeaderArgs { name }): Parameters<HeaderArgs>, context: RequestContext<RoleServer>) -> String {
        let values: Vec<String> = context
            .extensions
            .get::<axum::http::request::Parts>()
            .map(|p| p.headers.get_all(name.as_str()).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect())
            .unwrap_or_default();
        if values.is_empty() {
            "none".to_string()
        } else {
            values.join(", ")
        }
    }

    #[tool(description = "Return the claims of the verified bearer token this request arrived with, as JSON")]
    fn token_claims(&self, context: RequestContext<RoleServer>) -> String {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<jwt::Claims>())
            .map_or_else(|| "null".to_string(), |claims| claims.0.to_string())
    }

    #[tool(description = "Return this server's name")]
    fn whoami(&self) -> String {
        self.name.to_string()
    }

    #[tool(description = "Answer \"slept\" after `ms` milliseconds (at most a minute)")]
    async fn sleep(&self, Parameters(SleepArgs { ms }): Parameters<SleepArgs>) -> String {
        tokio::time::sleep(std::time::Duration::from_millis(ms.min(60_000))).await;
        "slept".to_string()
    }
}

// Without `router = ..`, `#[tool_handler]` would call `Self::tool_router()`
// on every request: slower, and blind to the generated tools.
#[tool_handler(router = self.router())]
impl ServerHandler for EchoServer {
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if let Some(Ok(mut peers)) = self.peers.as_ref().map(|p| p.lock()) {
            peers.push(context.peer);
        }
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(self.name.to_string(), env!("CARGO_PKG_VERSION")))
    }
}

/// Adds two JSON numbers: exactly when both are integers and the sum fits in
/// an `i64`, otherwise in `f64`. Rust prints whole floats without a fraction,
/// so `2 + 3` and `2.5 + 2.5` both give `"5"`.
fn sum(a: &serde_json::Number, b: &serde_json::Number) -> String {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        if let Some(sum) = a.checked_add(b) {
            return sum.to_string();
        }
    }
    // Without serde_json's `arbitrary_precision` every number has an f64 value.
    let as_f64 = |n: &serde_json::Number| n.as_f64().unwrap_or(f64::NAN);
    (as_f64(a) + as_f64(b)).to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.path.starts_with('/'), "--path must start with '/'");

    let shutdown = CancellationToken::new();
    // rmcp's default is stateful; stateless is the mode the gateway is built
    // around, so it is ours, with plain JSON answers. `--stateful` keeps rmcp's
    // SSE answers too, so that one flag gives tests the other wire shape whole.
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(args.stateful)
        .with_json_response(!args.stateful)
        .with_cancellation_token(shutdown.child_token());
    if args.any_host {
        config = config.disable_allowed_hosts();
    } else {
        config.allowed_hosts.extend(args.allowed_hosts);
    }

    let listener =
        tokio::net::TcpListener::bind((args.bind, args.port)).await.with_context(|| format!("binding {}:{}", args.bind, args.port))?;
    let addr = listener.local_addr()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::config(cert, key, args.tls_client_ca.as_deref())?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let metadata = args.resource_metadata_as.map(|authorization_server| ResourceMetadata {
        scheme,
        path: args.path.as_str().into(),
        authorization_server: authorization_server.into(),
        local: addr.to_string().into(),
    });

    let jwt = match (args.require_jwt_audience, args.jwt_hs256_secret) {
        (Some(audience), Some(secret)) => Some(jwt::Check { secret: secret.into_bytes(), audience, issuer: args.jwt_issuer }),
        _ => None,
    };
    let server = EchoServer::new(args.name.into(), args.extra_tools, args.dynamic, args.show_auth, jwt.is_some());
    let service = StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config);
    let mut app = axum::Router::new().route_service(&args.path, service);
    if args.modern_only {
        app = app.layer(axum::middleware::from_fn(modern_only));
    }
    if let Some(check) = jwt {
        let auth = Arc::new(JwtAuth { check, metadata: metadata.clone() });
        app = app.layer(axum::middleware::from_fn_with_state(auth, require_jwt));
    }
    if let Some(token) = args.require_bearer {
        let wanted: Arc<str> = format!("Bearer {token}").into();
        let challenge: Arc<str> = args.challenge.into();
        let calls_only = args.bearer_for_calls_only;
        let metadata = metadata.clone();
        app = app.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            let (wanted, challenge, metadata) = (Arc::clone(&wanted), Arc::clone(&challenge), metadata.clone());
            async move {
                use axum::response::IntoResponse as _;
                let presented = request.headers().get("authorization").map(|v| v.as_bytes().to_vec());
                let mut request = request;
                let mut concerned = true;
                if calls_only {
                    let (parts, body) = request.into_parts();
                    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
                    concerned = serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|m| m["method"] == "tools/call");
                    request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
                }
                if concerned && presented.as_deref() != Some(wanted.as_bytes()) {
                    let params: Vec<String> = metadata.iter().map(|m| m.challenge_param(request.headers())).collect();
                    return (
                        axum::http::StatusCode::UNAUTHORIZED,
                        [("www-authenticate", www_authenticate(&challenge, &params))],
                        "this server needs its bearer token",
                    )
                        .into_response();
                }
                next.run(request).await
            }
        }));
    }
    // Added after the layers above: anyone may read the metadata.
    if let Some(metadata) = metadata {
        for path in metadata.well_known_paths() {
            let metadata = metadata.clone();
            app = app.route(&path, axum::routing::get(move |headers: axum::http::HeaderMap| async move { metadata.document(&headers) }));
        }
    }
    // Outermost: every request is recorded, the refused ones too.
    if let Some(file) = args.record_auth {
        let file =
            std::fs::OpenOptions::new().create(true).append(true).open(&file).with_context(|| format!("opening {}", file.display()))?;
        app = app.layer(axum::middleware::from_fn_with_state(Arc::new(Mutex::new(file)), record_auth));
    }

    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{addr}{}", args.path)?;
        out.flush()?;
    }

    let stop = async move {
        shutdown_signal().await;
        // Ends open SSE streams and sessions so graceful shutdown does not
        // wait for clients that never hang up.
        shutdown.cancel();
    };
    match tls {
        Some(config) => axum::serve(tls::Listener::new(listener, config), app).with_graceful_shutdown(stop).await,
        None => axum::serve(listener, app).with_graceful_shutdown(stop).await,
    }
    .context("serving HTTP")?;
    Ok(())
}

/// HTTPS: rustls in front of the same axum app.
mod tls {
    use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

    use anyhow::Context as _;
    use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
    use tokio::{net::TcpStream, sync::mpsc};
    use tokio_rustls::{server::TlsStream, TlsAcceptor};

    /// The server's configuration: its certificate and, with `client_ca`,
    /// client certificates required and verified against it.
    pub fn config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading {}", cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
                    roots.add(c?)?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Connections that completed their handshake. Handshakes run on their
    /// own tasks, so a client that stalls or fails one (a refused client
    /// certificate) holds up no other.
    pub struct Listener {
        ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
    }

    impl Listener {
        pub fn new(tcp: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
            let local = tcp.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
            let (tx, ready) = mpsc::channel(64);
            let acceptor = TlsAcceptor::from(config);
            tokio::spawn(async move {
                loop {
                    let Ok((stream, peer)) = tcp.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let _ = tx.send((tls, peer)).await;
                            }
                            Ok(Err(e)) => eprintln!("TLS handshake with {peer} failed: {e}"),
                            Err(_) => eprintln!("TLS handshake with {peer} timed out"),
                        }
                    });
                }
            });
            Listener { ready, local }
        }
    }

    impl axum::serve::Listener for Listener {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match self.ready.recv().await {
                Some(connection) => connection,
                // The accepting task never ends, so neither does this.
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            Ok(self.local)
        }
    }
}

/// Refuses what a server of the 2026-07-28 revision alone does not speak:
/// `initialize` (with the versions it does speak) and any request without
/// that revision's version header.
async fn modern_only(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    const MODERN: &str = "2026-07-28";
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 4 << 20).await else {
        return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    };
    let message: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let refuse = |status: axum::http::StatusCode, code: i64, text: &str| {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": message.get("id").cloned().unwrap_or_default(),
            "error": { "code": code, "message": text, "data": { "supported": [MODERN] } },
        });
        (status, [("content-type", "application/json")], body.to_string()).into_response()
    };
    if message.get("method").and_then(serde_json::Value::as_str) == Some("initialize") {
        return refuse(axum::http::StatusCode::OK, -32602, "this server speaks only MCP 2026-07-28: use server/discover");
    }
    let version = parts.headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok());
    if parts.method == axum::http::Method::POST && version != Some(MODERN) {
        return refuse(axum::http::StatusCode::BAD_REQUEST, -32600, "this server speaks only MCP 2026-07-28");
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// A `WWW-Authenticate` value: `base` (a scheme, perhaps with parameters of
/// its own) followed by `params` (`name="value"`).
fn www_authenticate(base: &str, params: &[String]) -> String {
    match (params.is_empty(), base.trim().contains(' ')) {
        (true, _) => base.to_string(),
        (false, false) => format!("{base} {}", params.join(", ")),
        (false, true) => format!("{base}, {}", params.join(", ")),
    }
}

/// `--resource-metadata-as`: this server's RFC 9728 metadata. Its URLs are
/// built from the `Host` header a request arrived with, so that they name the
/// server as that client reaches it.
#[derive(Clone)]
struct ResourceMetadata {
    scheme: &'static str,
    /// The MCP endpoint's path.
    path: Arc<str>,
    /// The one authorization server named.
    authorization_server: Arc<str>,
    /// The authority when a request has no usable `Host` header.
    local: Arc<str>,
}

impl ResourceMetadata {
    const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

    /// Where the metadata is served: the well-known path inserted before the
    /// endpoint's path (RFC 9728 §3.1), and the bare well-known path.
    fn well_known_paths(&self) -> Vec<String> {
        let inserted = format!("{}{}", Self::WELL_KNOWN, self.path.trim_end_matches('/'));
        if inserted == Self::WELL_KNOWN {
            vec![inserted]
        } else {
            vec![inserted, Self::WELL_KNOWN.to_string()]
        }
    }

    fn authority<'a>(&'a self, headers: &'a axum::http::HeaderMap) -> &'a str {
        headers.get("host").and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty() && !h.contains(['"', '\\'])).unwrap_or(&self.local)
    }

    /// The `resource_metadata` parameter of a 401's challenge (RFC 9728 §5.1).
    fn challenge_param(&self, headers: &axum::http::HeaderMap) -> String {
        let path = self.well_known_paths().swap_remove(0);
        format!("resource_metadata=\"{}://{}{path}\"", self.scheme, self.authority(headers))
    }

    /// The metadata document (RFC 9728 §2): the resource is the MCP endpoint.
    fn document(&self, headers: &axum::http::HeaderMap) -> ([(&'static str, &'static str); 1], String) {
        let document = serde_json::json!({
            "resource": format!("{}://{}{}", self.scheme, self.authority(headers), self.path),
            "authorization_servers": [&*self.authorization_server],
            "bearer_methods_supported": ["header"],
        });
        ([("content-type", "application/json")], document.to_string())
    }
}

/// The state of `require_jwt`.
struct JwtAuth {
    check: jwt::Check,
    metadata: Option<ResourceMetadata>,
}

/// `--require-jwt-audience`: lets through a request whose bearer token passes
/// the check, its claims in the request's extensions (for `token_claims`);
/// refuses any other as RFC 6750 §3 says.
async fn require_jwt(
    axum::extract::State(auth): axum::extract::State<Arc<JwtAuth>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::{http::StatusCode, response::IntoResponse as _};
    let mut presented = request.headers().get_all("authorization").iter();
    let refusal = match (presented.next(), presented.next()) {
        (Some(_), Some(_)) => Some((StatusCode::BAD_REQUEST, "invalid_request", "more than one Authorization header")),
        (Some(value), None) => match bearer_token(value) {
            Some(token) => match auth.check.verify(token, now()) {
                Ok(claims) => {
                    request.extensions_mut().insert(jwt::Claims(claims));
                    return next.run(request).await;
                }
                Err(why) => Some((StatusCode::UNAUTHORIZED, "invalid_token", why)),
            },
            None => None,
        },
        (None, _) => None,
    };
    // Without a bearer token at all, the challenge carries no error (RFC 6750 §3.1).
    let mut params: Vec<String> =
        refusal.iter().flat_map(|(_, code, why)| [format!("error=\"{code}\""), format!("error_description=\"{why}\"")]).collect();
    params.extend(auth.metadata.iter().map(|m| m.challenge_param(request.headers())));
    let (status, body) = refusal.map_or((StatusCode::UNAUTHORIZED, "this server needs a bearer token"), |(status, _, why)| (status, why));
    (status, [("www-authenticate", www_authenticate("Bearer", &params))], body).into_response()
}

/// The token of an `Authorization: Bearer <token>` value (the scheme's case
/// does not matter, RFC 9110 §11.1); `None` for another scheme.
fn bearer_token(value: &axum::http::HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    Some(token.trim()).filter(|t| scheme.eq_ignore_ascii_case("bearer") && !t.is_empty())
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `--record-auth`: appends the request's Authorization header as received
/// (`-` without one) to the file. One `write` per line: lines never mix.
async fn record_auth(
    axum::extract::State(file): axum::extract::State<Arc<Mutex<std::fs::File>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use std::io::Write as _;
    let values: Vec<String> =
        request.headers().get_all("authorization").iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
    let line = if values.is_empty() { "-\n".to_string() } else { format!("{}\n", values.join(", ")) };
    let written = match file.lock() {
        Ok(mut file) => file.write_all(line.as_bytes()),
        Err(poisoned) => poisoned.into_inner().write_all(line.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("cannot record the Authorization header: {e}");
    }
    next.run(request).await
}

/// HS256 JSON Web Tokens (RFC 7519), checked by hand: the signature
/// (HMAC-SHA256, compared in constant time), `exp`, `nbf`, `aud` and, when
/// asked, `iss`. Nothing else of JOSE: a test fixture, not a library.
mod jwt {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    use hmac::{Hmac, Mac as _};
    use serde_json::Value;
    use sha2::Sha256;

    /// A verified token's claims, kept in the request's extensions.
    #[derive(Clone, Debug)]
    pub struct Claims(pub Value);

    /// What a token must be.
    pub struct Check {
        /// The HMAC key.
        pub secret: Vec<u8>,
        /// `aud` must be this, or an array containing it.
        pub audience: String,
        /// `iss` must be this, when given.
        pub issuer: Option<String>,
    }

    const MALFORMED: &str = "the token is not a JWT";

    impl Check {
        /// The claims of `token` if it passes at `now` (seconds since the
        /// epoch), else why not (an `error_description`: no quotes).
        pub fn verify(&self, token: &str, now: f64) -> Result<Value, &'static str> {
            let (signed, signature) = token.rsplit_once('.').ok_or(MALFORMED)?;
            let (header, payload) = signed.split_once('.').filter(|(_, p)| !p.contains('.')).ok_or(MALFORMED)?;
            if decode(header)?["alg"] != "HS256" {
                return Err("the token is not signed with HS256");
            }
            let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| MALFORMED)?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).map_err(|_| "unusable key")?;
            mac.update(signed.as_bytes());
            mac.verify_slice(&signature).map_err(|_| "the signature does not verify")?;
            let claims = decode(payload)?;
            if !claims.is_object() {
                return Err(MALFORMED);
            }
            match claims.get("exp").map(Value::as_f64) {
                None => return Err("the token has no exp"),
                Some(Some(exp)) if now < exp => {}
                Some(Some(_)) => return Err("the token has expired"),
                Some(None) => return Err(MALFORMED),
            }
            if claims.get("nbf").is_some_and(|nbf| nbf.as_f64().is_none_or(|nbf| now < nbf)) {
                return Err("the token is not valid yet");
            }
            let audience = self.audience.as_str();
            let for_us = match &claims["aud"] {
                Value::String(aud) => aud == audience,
                Value::Array(auds) => auds.iter().any(|aud| aud == audience),
                _ => false,
            };
            if !for_us {
                return Err("the token is not for this audience");
            }
            if self.issuer.as_deref().is_some_and(|issuer| claims["iss"] != issuer) {
                return Err("the token is from another issuer");
            }
            Ok(claims)
        }
    }

    /// A base64url segment holding JSON.
    fn decode(segment: &str) -> Result<Value, &'static str> {
        let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| MALFORMED)?;
        serde_json::from_slice(&bytes).map_err(|_| MALFORMED)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const NOW: f64 = 1_800_000_000.0;

        fn sign(header: &Value, claims: &Value, secret: &[u8]) -> String {
            let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(signed.as_bytes());
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        }

        fn token(claims: Value) -> String {
            sign(&serde_json::json!({"alg": "HS256", "typ": "JWT"}), &claims, b"key")
        }

        fn check(issuer: Option<&str>) -> Check {
            Check { secret: b"key".to_vec(), audience: "crm".into(), issuer: issuer.map(Into::into) }
        }

        #[test]
        fn a_good_token_passes_with_its_claims() {
            use serde_json::json;
            let claims = json!({"iss": "http://as", "sub": "gw", "aud": "crm", "exp": NOW + 60.0});
            assert_eq!(check(Some("http://as")).verify(&token(claims.clone()), NOW), Ok(claims));
            let many = json!({"aud": ["other", "crm"], "exp": NOW + 1.0, "nbf": NOW});
            assert!(check(None).verify(&token(many), NOW).is_ok());
        }

        #[test]
        fn bad_tokens_are_refused_saying_why() {
            use serde_json::json;
            let c = check(Some("http://as"));
            let refused = |claims: Value| c.verify(&token(claims), NOW).unwrap_err();
            assert_eq!(refused(json!({"iss": "http://as", "aud": "crm", "exp": NOW})), "the token has expired");
            assert_eq!(refused(json!({"iss": "http://as", "aud": "crm"})), "the token has no exp");
            assert_eq!(refused(json!({"iss": "http://as", "aud": "other", "exp": NOW + 9.0})), "the token is not for this audience");
            assert_eq!(refused(json!({"iss": "http://as", "aud": ["a", "b"], "exp": NOW + 9.0})), "the token is not for this audience");
            assert_eq!(refused(json!({"iss": "http://as", "exp": NOW + 9.0})), "the token is not for this audience");
            assert_eq!(refused(json!({"iss": "http://evil", "aud": "crm", "exp": NOW + 9.0})), "the token is from another issuer");
            assert_eq!(
                refused(json!({"iss": "http://as", "aud": "crm", "exp": NOW + 9.0, "nbf": NOW + 5.0})),
                "the token is not valid yet"
            );

            let good = json!({"iss": "http://as", "aud": "crm", "exp": NOW + 9.0});
            let other_key = sign(&json!({"alg": "HS256"}), &good, b"not the key");
            assert_eq!(c.verify(&other_key, NOW).unwrap_err(), "the signature does not verify");
            let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(good.to_string()));
            assert_eq!(c.verify(&none, NOW).unwrap_err(), "the token is not signed with HS256");
            // The payload changed under the same signature.
            let t = token(good);
            let (head, rest) = t.split_once('.').unwrap();
            let signature = rest.split_once('.').unwrap().1;
            let forged = json!({"iss": "http://as", "aud": "crm", "exp": NOW + 9e9});
            let tampered = format!("{head}.{}.{signature}", URL_SAFE_NO_PAD.encode(forged.to_string()));
            assert_eq!(c.verify(&tampered, NOW).unwrap_err(), "the signature does not verify");
            for junk in ["", "a.b", "a.b.c.d", "opaque-token", &format!("{t}.x")] {
                assert_eq!(c.verify(junk, NOW).unwrap_err(), MALFORMED, "{junk}");
            }
        }
    }
}

/// Resolves on ctrl-c or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("cannot listen for ctrl-c: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                eprintln!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::sum;

    fn check(a: serde_json::Value, b: serde_json::Value, expected: &str) {
        let (serde_json::Value::Number(a), serde_json::Value::Number(b)) = (a, b) else {
            panic!("operands must be numbers");
        };
        assert_eq!(sum(&a, &b), expected);
    }

    #[test]
    fn sums() {
        use serde_json::json;
        check(json!(2), json!(3), "5");
        check(json!(-2), json!(2), "0");
        check(json!(2.5), json!(0.25), "2.75");
        check(json!(2.5), json!(2.5), "5");
        // Past i64 the sum is a float, printed in its shortest exact form.
        check(json!(i64::MAX), json!(1), "9223372036854776000");
        check(json!(0.1), json!(0.2), "0.30000000000000004");
    }
}
