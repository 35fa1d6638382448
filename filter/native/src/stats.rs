//! The filter's metrics as a dynamic module defines them.
//!
//! The core names each update as the wasm glue needs it: one Envoy stat
//! per series, its labels encoded in the name (`mcp_requests_total.method=.=
//! tools/call;.;server=.=echo;.;...`), which the bootstrap's `stats_tags`
//! take out again (`metrics.rs`). A dynamic module cannot define stats
//! while it serves (Envoy freezes definitions once the configuration is
//! made), but it can define a family with label names up front and give
//! the values per request. So each family below is defined once per
//! configuration, with the labels the core encodes, in the same order; an
//! update's name is split back into the family and its label values.
//! With `metrics_namespace: wasmcustom` the Prometheus exposition is the
//! same as the wasm filter's (`mcp_requests_total{method=...,...}`).

use mcp_filter::metrics::Update;

/// Counter or histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
}

/// A metric family: its name, kind and label names, in the core's order.
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
}

/// Every family `metrics::updates` names. A unit test runs the core over
/// every outcome and checks that each update maps to one of these.
pub const FAMILIES: &[Family] = &[
    Family { name: "mcp_requests_total", kind: Kind::Counter, labels: &["method", "server", "tool", "outcome"] },
    Family { name: "mcp_request_duration_milliseconds", kind: Kind::Histogram, labels: &["method", "server"] },
    Family { name: "mcp_tool_duration_milliseconds", kind: Kind::Histogram, labels: &["server", "tool"] },
    Family { name: "mcp_jsonrpc_errors_total", kind: Kind::Counter, labels: &["method", "code"] },
    Family { name: "mcp_auth_failures_total", kind: Kind::Counter, labels: &["reason"] },
    Family { name: "mcp_authorization_denials_total", kind: Kind::Counter, labels: &["server", "tool"] },
    Family { name: "mcp_rate_limited_total", kind: Kind::Counter, labels: &["limit"] },
    Family { name: "mcp_sessions_opened_total", kind: Kind::Counter, labels: &[] },
    Family { name: "mcp_errors_total", kind: Kind::Counter, labels: &[] },
];

/// One update as the module applies it: which family, its label values
/// (in the family's order), and the value (1 for a counter).
#[derive(Debug, PartialEq, Eq)]
pub struct Sample<'a> {
    pub family: usize,
    pub values: Vec<&'a str>,
    pub value: u64,
}

/// Splits an update's stat name into its family and label values; `None`
/// if the name is no family's (the core and [`FAMILIES`] disagree).
pub fn sample(update: &Update) -> Option<Sample<'_>> {
    let (name, kind, value) = match update {
        Update::Count(name) => (name.as_str(), Kind::Counter, 1),
        Update::Record(name, value) => (name.as_str(), Kind::Histogram, *value),
    };
    let base = name.split_once('.').map_or(name, |(base, _)| base);
    let mut rest = name.get(base.len()..)?;
    let family = FAMILIES.iter().position(|f| f.name == base && f.kind == kind)?;
    let labels = FAMILIES.get(family)?.labels;
    let mut values = Vec::with_capacity(labels.len());
    for label in labels {
        // `.label=.=value;.;`, as `metrics::label` writes it.
        rest = rest.strip_prefix('.')?.strip_prefix(*label)?.strip_prefix("=.=")?;
        let end = rest.find(";.;")?;
        values.push(rest.get(..end)?);
        rest = rest.get(end + 3..)?;
    }
    rest.is_empty().then_some(Sample { family, values, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_filter::decision::{AuthFailure, Cause};
    use mcp_filter::metrics::{updates, Tally};

    fn tallies() -> Vec<Tally> {
        let base = Tally { method: "tools/call", server: "echo".into(), tool: "echo__a.b".into(), status: 200, ..Tally::default() };
        let mut out = vec![base.clone(), Tally { code: Some(-32602), ..base.clone() }, Tally { status: 0, ..base.clone() }];
        for cause in [
            Cause::Unauthenticated(AuthFailure::Missing),
            Cause::Unauthenticated(AuthFailure::Invalid),
            Cause::RateLimited("per-caller".into()),
            Cause::Forbidden,
        ] {
            let mut t = base.clone();
            t.refused(&cause);
            out.push(t);
        }
        out.push(Tally { denied: true, ..base.clone() });
        out.push(Tally { method: "initialize", server: String::new(), tool: String::new(), session_opened: true, ..base });
        out
    }

    #[test]
    fn every_update_of_the_core_maps_to_a_family() {
        let mut seen = vec![false; FAMILIES.len()];
        for t in tallies() {
            for u in updates(&t, 7) {
                let s = sample(&u).unwrap_or_else(|| panic!("{u:?} is no family's"));
                assert_eq!(s.values.len(), FAMILIES[s.family].labels.len());
                seen[s.family] = true;
            }
        }
        assert!(seen.iter().all(|s| *s), "a family the core never names: {seen:?}");
    }

    #[test]
    fn a_name_splits_into_its_label_values() {
        let t = Tally { method: "tools/call", server: "echo".into(), tool: "echo__a.b;c".into(), status: 200, ..Tally::default() };
        let all = updates(&t, 12);
        let s = sample(&all[0]).unwrap();
        assert_eq!(
            (FAMILIES[s.family].name, s.values, s.value),
            ("mcp_requests_total", vec!["tools/call", "echo", "echo__a.b_c", "ok"], 1)
        );
        let h = sample(&all[1]).unwrap();
        assert_eq!((FAMILIES[h.family].name, h.values, h.value), ("mcp_request_duration_milliseconds", vec!["tools/call", "echo"], 12));
        let per_tool = sample(&all[2]).unwrap();
        assert_eq!((FAMILIES[per_tool.family].name, per_tool.values), ("mcp_tool_duration_milliseconds", vec!["echo", "echo__a.b_c"]));
        // An empty label value stays empty.
        let init = Tally { method: "initialize", status: 200, ..Tally::default() };
        assert_eq!(sample(&updates(&init, 1)[0]).unwrap().values, vec!["initialize", "", "", "ok"]);
    }

    #[test]
    fn a_name_no_family_has_is_refused() {
        assert_eq!(sample(&Update::Count("mcp_unknown_total".into())), None);
        // A counter's name recorded as a histogram is not that family.
        assert_eq!(sample(&Update::Record("mcp_sessions_opened_total".into(), 1)), None);
        assert_eq!(sample(&Update::Count("mcp_rate_limited_total.limit=.=x".into())), None);
        assert_eq!(sample(&Update::Count("mcp_rate_limited_total.limit=.=x;.;.extra=.=y;.;".into())), None);
    }
}
