//! `mcp-gateway`: the control plane binary. Serves xDS to Envoy and the
//! admin API, or validates a catalog with `--validate FILE`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mcp_control_plane::ads::AdsServer;
use mcp_control_plane::controller::{Controller, SecretFiles, Settings};
use mcp_control_plane::snapshot::SnapshotCache;
use mcp_control_plane::{catalog, http};

#[derive(Parser)]
#[command(version, about = "MCP gateway control plane: catalog.yaml -> Envoy over xDS")]
struct Args {
    /// The catalog to serve; watched for changes. `--config` is the same
    /// flag, as the production guides write it.
    #[arg(long, visible_alias = "config", env = "MCP_GATEWAY_CATALOG", default_value = "catalog.yaml")]
    catalog: PathBuf,
    /// Check FILE (syntax, environment variables, fields) and exit: 0 if
    /// valid. Without FILE, the catalog (`--catalog` / `--config`).
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    validate: Option<Option<PathBuf>>,
    /// The filter module to publish to Envoy.
    #[arg(long, env = "MCP_GATEWAY_WASM", default_value = "target/mcp_filter.wasm")]
    wasm: PathBuf,
    /// Where Envoy connects for ADS (keep it on loopback or a private network).
    #[arg(long, env = "MCP_GATEWAY_XDS_LISTEN", default_value = "127.0.0.1:18000")]
    xds_listen: SocketAddr,
    /// The admin API.
    #[arg(long, env = "MCP_GATEWAY_ADMIN_LISTEN", default_value = "127.0.0.1:18001")]
    admin_listen: SocketAddr,
    /// host:port at which Envoy reaches the admin API (default: --admin-listen).
    #[arg(long, env = "MCP_GATEWAY_ADMIN_ADVERTISE")]
    admin_advertise: Option<String>,
    /// How often every server's tools are listed again.
    #[arg(long, default_value_t = 30)]
    rediscover_seconds: u64,
    /// How often each HTTP server is pinged in the control plane's own
    /// session with it (0: never).
    #[arg(long, env = "MCP_GATEWAY_HEALTH_CHECK_SECONDS", default_value_t = 10)]
    health_check_seconds: u64,
    /// Failed pings in a row after which a server is asked again what it
    /// offers; if that fails too, its tools leave the lists until it answers.
    #[arg(long, env = "MCP_GATEWAY_UNHEALTHY_THRESHOLD", default_value_t = 3)]
    unhealthy_threshold: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.validate {
        return validate(file.as_ref().unwrap_or(&args.catalog));
    }
    let set_log_level = init_logging();
    // reqwest is built without a TLS provider of its own: `upstream.rs`
    // gives each client its rustls configuration. This default serves any
    // client made otherwise, which would panic without one.
    let _ = mcp_control_plane::upstream::tls::provider().as_ref().clone().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args, set_log_level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "control plane stopped");
            ExitCode::FAILURE
        }
    }
}

fn validate(file: &PathBuf) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    // `${file:...}` secrets as the controller reads them (relative to the catalog).
    let secrets = SecretFiles::new(file.parent().unwrap_or(std::path::Path::new(".")));
    match catalog::load_with(&text, |name| secrets.lookup(name)) {
        Ok(c) => {
            let g = &c.gateway;
            let auth = match &g.auth {
                Some(a) => {
                    let jwt = a.jwt.as_ref().map(|j| format!(", JWT from {}", j.issuer)).unwrap_or_default();
                    format!("authentication: {} API key(s){jwt}", a.api_keys.len())
                }
                None => "authentication: OFF (anyone who can reach the listener can call every tool; set gateway.auth)".into(),
            };
            let authz = match &g.authorization {
                Some(a) => format!("authorization: {} rule(s), default {:?}", a.rules.len(), a.default).to_lowercase(),
                None => "authorization: none (every caller may use everything)".into(),
            };
            let limits = g.rate_limits.len() + usize::from(g.rate_limit_per_minute.is_some());
            println!("{}: valid ({} servers); {auth}; {authz}; {limits} rate limit(s)", file.display(), c.servers.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

/// JSON lines on stderr. `RUST_LOG`, when set, decides the level for good;
/// otherwise the catalog's `gateway.log_level` does (`info` until it is
/// read), and the returned function applies it at each reload.
fn init_logging() -> Option<mcp_control_plane::controller::SetLogLevel> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let fixed = std::env::var_os("RUST_LOG").is_some();
    let initial = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(initial);
    tracing_subscriber::registry().with(filter).with(fmt::layer().json().with_current_span(false)).init();
    (!fixed).then(|| {
        std::sync::Arc::new(move |level: &str| {
            let _ = handle.modify(|f| *f = EnvFilter::new(level));
        }) as mcp_control_plane::controller::SetLogLevel
    })
}

async fn serve(args: Args, set_log_level: Option<mcp_control_plane::controller::SetLogLevel>) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.wasm)
        .with_context(|| format!("cannot read the filter module {} (build it with `make wasm`)", args.wasm.display()))?;
    let advertise = args.admin_advertise.clone().unwrap_or_else(|| args.admin_listen.to_string());
    let (host, port) = advertise.rsplit_once(':').context("--admin-advertise must be host:port")?;
    let port: u16 = port.parse().context("--admin-advertise must be host:port")?;
    let module = std::sync::Arc::new(mcp_control_plane::state::FilterModule::new(wasm));
    tracing::info!(sha256 = module.sha256(), bytes = module.bytes().len(), "filter module read");
    let settings = Settings {
        catalog_path: args.catalog.clone(),
        module,
        fallback_session_key: random_key()?,
        admin_advertise: (host.trim_matches(|c| c == '[' || c == ']').to_string(), port),
        rediscover_every: Duration::from_secs(args.rediscover_seconds.max(1)),
        health_every: (args.health_check_seconds > 0).then(|| Duration::from_secs(args.health_check_seconds)),
        unhealthy_threshold: args.unhealthy_threshold.max(1),
        gateway_version: env!("CARGO_PKG_VERSION").to_string(),
        internal_token: random_key()?,
        set_log_level,
    };
    let cache = SnapshotCache::new();
    let controller = Controller::new(settings, cache.clone());

    // One signal for everything: SIGTERM or ctrl-c.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopping = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let xds = tonic::transport::Server::builder()
        .add_service(AdsServer::new(cache.clone()).service())
        // Global rate limits: Envoy's ratelimit filter asks here (cluster `xds`).
        .add_service(mcp_control_plane::rls::Rls::new(controller.current()).service())
        // What the Envoys push for the console: their stats (the bootstrap's
        // stats sink) and the audit log's decisions (the listener's).
        .add_service(mcp_control_plane::telemetry::sinks::Sinks(controller.telemetry()).metrics_service())
        .add_service(mcp_control_plane::telemetry::sinks::Sinks(controller.telemetry()).access_log_service())
        .serve_with_shutdown(args.xds_listen, stopping());
    let admin_listener =
        tokio::net::TcpListener::bind(args.admin_listen).await.with_context(|| format!("cannot listen on {}", args.admin_listen))?;
    let admin = axum::serve(admin_listener, http::router(&controller)).with_graceful_shutdown(stopping());
    tracing::info!(xds = %args.xds_listen, admin = %args.admin_listen, catalog = %args.catalog.display(), "control plane started");
    let mut watcher = tokio::spawn(controller.clone().run());
    let mut admin = tokio::spawn(async move { admin.await });
    let mut xds = tokio::spawn(xds);
    tokio::select! {
        () = shutdown_signal() => {}
        r = &mut xds => r.context("xDS server panicked")?.context("xDS server failed")?,
        r = &mut admin => r.context("admin API panicked")?.context("admin API failed")?,
        r = &mut watcher => r.context("catalog watcher panicked")?.context("catalog watcher failed")?,
    }
    // No more reloads: they would start servers again.
    watcher.abort();
    // Stop accepting; let calls in flight finish, within bounds (clients'
    // GET streams never finish by themselves); then stop the servers the
    // control plane runs, so that no child outlives it.
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN, &mut admin).await.is_err() {
        tracing::warn!("calls still in flight after {} s; closing them", DRAIN.as_secs());
        admin.abort();
    }
    xds.abort();
    controller.runtimes().shutdown().await;
    tracing::info!("control plane stopped");
    Ok(())
}

/// How long calls in flight may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// A fresh session key, for when the catalog names none.
fn random_key() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)).context("cannot read /dev/urandom for a session key")?;
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
