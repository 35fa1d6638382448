//! The filter's own stats: a finished request's updates (`metrics.rs`)
//! applied to Envoy's counters and histograms.

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::types::MetricType;

use crate::metrics::Update;

thread_local! {
    /// Each stat's id in this VM: Envoy allocates a new id on every
    /// definition, even of a name it knows, so each is defined once.
    static METRIC_IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Applies a finished request's updates to Envoy's stats. A stat Envoy
/// refuses is skipped: metrics never fail a request.
pub(super) fn apply(updates: &[Update]) {
    METRIC_IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        let mut id = |name: &str, kind: MetricType| -> Option<u32> {
            if let Some(id) = ids.get(name) {
                return Some(*id);
            }
            let id = proxy_wasm::hostcalls::define_metric(kind, name).ok()?;
            ids.insert(name.to_string(), id);
            Some(id)
        };
        for u in updates {
            let _ = match u {
                Update::Count(name) => id(name, MetricType::Counter).map(|i| proxy_wasm::hostcalls::increment_metric(i, 1)),
                Update::Record(name, value) => id(name, MetricType::Histogram).map(|i| proxy_wasm::hostcalls::record_metric(i, *value)),
            };
        }
    });
}
