//! The access log: one JSON line per HTTP request on the gateway's listener,
//! written by Envoy (`gateway.access_log`: a path, `/dev/stdout`, or `off`).
//!
//! An MCP request's line carries the filter's record of it (`mcp`: method,
//! server, tool, JSON-RPC id and error code, outcome, principal, revision,
//! request id, HTTP method), which the filter hands over as one filter-state object
//! (`wasm.mcp_log`, JSON text) and which is embedded as it is: Envoy's JSON
//! format would quote it as a string. So that line is a text format whose
//! other fields are only values Envoy produces in a JSON-safe alphabet
//! (numbers, times, flags, cluster names, trace ids). Every other request
//! gets a line in Envoy's JSON format, which escapes what it writes (its
//! path without the query string: queries may hold secrets). Nothing else
//! of the request (headers, arguments) is written.

use envoy_types::pb::envoy::config::accesslog::v3::{
    access_log, access_log_filter, extension_filter, AccessLog, AccessLogFilter, ExtensionFilter,
};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, substitution_format_string, DataSource, SubstitutionFormatString, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{file_access_log, FileAccessLog};
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use envoy_types::pb::envoy::extensions::formatter::req_without_query::v3::ReqWithoutQuery;
use envoy_types::pb::google::protobuf::{value, Struct, Value as PbValue};
use envoy_types::util::pack_any;
use mcp_filter::config::LOG_PROPERTY;

/// What both kinds of line share, as (field, Envoy command): values in a
/// JSON-safe alphabet, written as JSON numbers or strings.
const COMMON: &[(&str, &str, bool)] = &[
    // (name, command, is a number)
    ("time", "%START_TIME%", false),
    ("status", "%RESPONSE_CODE%", true),
    ("flags", "%RESPONSE_FLAGS%", false),
    ("duration_ms", "%DURATION%", true),
    ("bytes_in", "%BYTES_RECEIVED%", true),
    ("bytes_out", "%BYTES_SENT%", true),
    ("upstream", "%UPSTREAM_CLUSTER%", false),
    ("trace_id", "%TRACE_ID%", false),
];

/// The two access loggers, writing to `path`.
pub fn access_logs(path: &str, mcp_path: &str) -> Vec<AccessLog> {
    let has_record = format!("'wasm.{LOG_PROPERTY}' in filter_state");
    let mut mcp_line = String::from(r#"{"log":"access""#);
    for (name, command, number) in COMMON {
        let quote = if *number { "" } else { "\"" };
        mcp_line.push_str(&format!(r#","{name}":{quote}{command}{quote}"#));
    }
    // The MCP path is the catalog's (validated), written as a JSON string.
    let path_json = serde_json::to_string(mcp_path).unwrap_or_else(|_| "null".into());
    mcp_line.push_str(&format!(r#","path":{path_json},"mcp":%FILTER_STATE(wasm.{LOG_PROPERTY}:PLAIN)%}}"#));
    mcp_line.push('\n');
    let mcp = SubstitutionFormatString {
        format: Some(substitution_format_string::Format::TextFormatSource(DataSource {
            specifier: Some(data_source::Specifier::InlineString(mcp_line)),
            ..Default::default()
        })),
        ..Default::default()
    };
    let text = |v: &str| PbValue { kind: Some(value::Kind::StringValue(v.to_string())) };
    let mut fields: Vec<(String, PbValue)> = COMMON.iter().map(|(name, command, _)| (name.to_string(), text(command))).collect();
    fields.push(("log".into(), text("access")));
    fields.push(("method".into(), text("%REQ(:METHOD)%")));
    fields.push(("path".into(), text("%REQ_WITHOUT_QUERY(:PATH)%")));
    fields.push(("request_id".into(), text("%REQ(X-REQUEST-ID)%")));
    let other = SubstitutionFormatString {
        format: Some(substitution_format_string::Format::JsonFormat(Struct { fields: fields.into_iter().collect() })),
        formatters: vec![TypedExtensionConfig {
            name: "envoy.formatter.req_without_query".into(),
            typed_config: Some(pack_any(ReqWithoutQuery {})),
        }],
        ..Default::default()
    };
    vec![logger("mcp_access", path, mcp, has_record.clone()), logger("http_access", path, other, format!("!({has_record})"))]
}

fn logger(name: &str, path: &str, format: SubstitutionFormatString, cel: String) -> AccessLog {
    let file = FileAccessLog { path: path.to_string(), access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(format)) };
    AccessLog { name: name.into(), filter: Some(cel_filter(cel)), config_type: Some(access_log::ConfigType::TypedConfig(pack_any(file))) }
}

/// A filter of requests by a CEL expression (for access logs and local-reply mappers).
pub(super) fn cel_filter(expression: String) -> AccessLogFilter {
    let only = ExpressionFilter { expression, ..Default::default() };
    AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::ExtensionFilter(ExtensionFilter {
            name: "envoy.access_loggers.extension_filters.cel".into(),
            config_type: Some(extension_filter::ConfigType::TypedConfig(pack_any(only))),
        })),
    }
}
