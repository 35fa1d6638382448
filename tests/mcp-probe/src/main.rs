//! `mcp-probe`: a command-line MCP client for poking at an MCP endpoint (an
//! upstream server or the gateway) over Streamable HTTP.
//!
//! ```text
//! mcp-probe --url http://127.0.0.1:8101/mcp info
//! mcp-probe --url http://127.0.0.1:8101/mcp list
//! mcp-probe --url http://127.0.0.1:8101/mcp call add '{"a": 2, "b": 3}'
//! mcp-probe --url ... --header 'X-Api-Key: secret' list
//! ```
//!
//! Every run does the full lifecycle with rmcp's client: `initialize` and
//! `notifications/initialized`, the one command, then closes the session
//! (rmcp sends `DELETE` when the server issued an `Mcp-Session-Id`).
//!
//! The result goes to stdout as pretty JSON and nothing else does, so tests can
//! parse it. Errors go to stderr, with exit status:
//!
//! - `0`: success;
//! - `1`: any failure: bad arguments, HTTP or transport errors, or a JSON-RPC
//!   error response (printed with its code and message);
//! - `2`: `call` got a `CallToolResult` with `isError: true`. The result is
//!   still printed on stdout, as the tool's error is in its content.

use std::{collections::HashMap, process::ExitCode};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use rmcp::{
    model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, JsonObject, ProtocolVersion},
    service::{ClientInitializeError, RunningService, ServiceError},
    transport::{streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport},
    RoleClient, ServiceExt,
};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(version, about = "Talk to an MCP server over Streamable HTTP and print JSON")]
struct Args {
    /// The MCP endpoint, e.g. http://127.0.0.1:8101/mcp.
    #[arg(long)]
    url: String,
    /// An extra HTTP header for every request, as 'Name: value'. Repeatable;
    /// a repeated name keeps only its last value. rmcp refuses to override
    /// `Accept`, `Mcp-Session-Id` and `Last-Event-ID`.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The protocol version to ask for in `initialize` (default: the newest
    /// one that still has an `initialize` handshake).
    #[arg(long, value_parser = parse_protocol_version,
          default_value_t = ProtocolVersion::LATEST_WITH_INITIALIZE)]
    protocol_version: ProtocolVersion,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the server's initialize result (serverInfo, protocolVersion,
    /// capabilities, instructions).
    Info,
    /// Print `{"tools": [...]}`, following `nextCursor` through every page.
    List,
    /// Call a tool and print its CallToolResult.
    Call {
        /// The tool's name.
        name: String,
        /// The arguments, a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // See Cargo.toml: without it, building the reqwest client panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mcp-probe: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command whose arguments have been checked.
enum Action {
    Info,
    List,
    Call { name: String, arguments: JsonObject },
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Check the command line before opening a session, so that a typo does not
    // cost a round trip.
    let action = match args.command {
        Command::Info => Action::Info,
        Command::List => Action::List,
        Command::Call { name, arguments } => Action::Call { name, arguments: parse_arguments(&arguments)? },
    };
    let headers = parse_headers(&args.headers)?;

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(args.url.as_str()).custom_headers(headers),
    );
    let client_config = ClientConfig::new(ClientCapabilities::default(), Implementation::new("mcp-probe", env!("CARGO_PKG_VERSION")))
        .with_protocol_version(args.protocol_version);
    let client = client_config
        .serve(transport)
        .await
        .map_err(describe_initialize_error)
        .with_context(|| format!("initializing a session with {}", args.url))?;

    // Close the session whatever the command's outcome.
    let outcome = execute(&client, action).await;
    let closed = client.cancel().await;
    let (output, code) = outcome?;
    closed.context("closing the session")?;

    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(code)
}

/// Runs one command on an initialized session and returns what to print.
async fn execute(client: &RunningService<RoleClient, ClientConfig>, action: Action) -> anyhow::Result<(serde_json::Value, ExitCode)> {
    match action {
        Action::Info => {
            let info = client.peer_info().context("the session has no initialize result")?;
            Ok((serde_json::to_value(&*info)?, ExitCode::SUCCESS))
        }
        Action::List => {
            let tools = client.list_all_tools().await.map_err(describe_service_error).context("listing tools")?;
            Ok((serde_json::json!({ "tools": tools }), ExitCode::SUCCESS))
        }
        Action::Call { name, arguments } => {
            let params = CallToolRequestParams::new(name.clone()).with_arguments(arguments);
            let result =
                client.call_tool(params).await.map_err(describe_service_error).with_context(|| format!("calling tool {name:?}"))?;
            let code = if result.is_error == Some(true) {
                eprintln!("mcp-probe: tool {name:?} returned isError: true");
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
            Ok((serde_json::to_value(&result)?, code))
        }
    }
}

/// Parses the `call` arguments, which MCP requires to be a JSON object.
fn parse_arguments(text: &str) -> anyhow::Result<JsonObject> {
    match serde_json::from_str(text).context("the tool arguments are not valid JSON")? {
        serde_json::Value::Object(object) => Ok(object),
        other => bail!("the tool arguments must be a JSON object, not {other}"),
    }
}

/// Parses `--protocol-version`. rmcp builds a `ProtocolVersion` from any string
/// only through serde; an unknown version is passed through for the server to
/// judge.
fn parse_protocol_version(text: &str) -> Result<ProtocolVersion, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
}

/// Parses `--header 'Name: value'` options into the map rmcp's transport takes.
fn parse_headers(headers: &[String]) -> anyhow::Result<HashMap<http::HeaderName, http::HeaderValue>> {
    headers
        .iter()
        .map(|header| {
            let (name, value) = header.split_once(':').with_context(|| format!("--header {header:?} is not 'Name: value'"))?;
            let name = http::HeaderName::try_from(name.trim()).with_context(|| format!("--header {header:?} has an invalid name"))?;
            let value = http::HeaderValue::try_from(value.trim()).with_context(|| format!("--header {header:?} has an invalid value"))?;
            Ok((name, value))
        })
        .collect()
}

/// Spells out a JSON-RPC error from the server; other errors keep rmcp's text.
fn describe_service_error(error: ServiceError) -> anyhow::Error {
    match error {
        ServiceError::McpError(error) => json_rpc_error(&error),
        other => anyhow::Error::new(other),
    }
}

/// As [`describe_service_error`], for the `initialize` exchange.
fn describe_initialize_error(error: ClientInitializeError) -> anyhow::Error {
    match error {
        ClientInitializeError::JsonRpcError(error) => json_rpc_error(&error),
        other => anyhow::Error::new(other),
    }
}

fn json_rpc_error(error: &rmcp::ErrorData) -> anyhow::Error {
    let mut text = format!("server returned JSON-RPC error {}: {}", error.code.0, error.message);
    if let Some(data) = &error.data {
        text.push_str(&format!(" (data: {data})"));
    }
    anyhow::Error::msg(text)
}

#[cfg(test)]
mod tests {
    use super::{parse_arguments, parse_headers};

    fn check_header(option: &str, expected: Option<(&str, &str)>) {
        let parsed = parse_headers(&[option.to_owned()]).ok();
        let parsed = parsed.map(|map| {
            let (name, value) = map.into_iter().next().expect("one header");
            (name.to_string(), value.to_str().expect("ascii").to_owned())
        });
        let expected = expected.map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(parsed, expected, "--header {option:?}");
    }

    #[test]
    fn headers() {
        check_header("X-Api-Key: s3cret", Some(("x-api-key", "s3cret")));
        check_header("authorization:Bearer a:b", Some(("authorization", "Bearer a:b")));
        check_header("X-Empty:", Some(("x-empty", "")));
        check_header("no colon", None);
        check_header("bad name: v", None);
        check_header("X-Bad: line\nbreak", None);
    }

    #[test]
    fn arguments() {
        let check = |text: &str, ok: bool| assert_eq!(parse_arguments(text).is_ok(), ok, "{text}");
        check(r#"{"a": 1}"#, true);
        check("{}", true);
        check("[1]", false);
        check("1", false);
        check("{", false);
    }
}
