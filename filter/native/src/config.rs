//! One filter configuration, as Envoy hands it to the module: the same
//! `FilterConfig` JSON the wasm filter reads (one type for both glues).
//!
//! Envoy makes a configuration on its main thread and shares it with every
//! worker; a wasm filter instead has one VM per worker. The core's
//! `Gateway` keeps per-worker caches (`RefCell`s: the lists filtered per
//! caller, the session ids opened lately), so it is built once per worker
//! here too, from the shared `FilterConfig`, on first use: [`Config::gateway`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use mcp_filter::config::FilterConfig;
use mcp_filter::gateway::Gateway;

/// A configuration: what Envoy's `on_http_filter_config_new` made.
#[derive(Debug)]
pub struct Config {
    /// Unique in the process: names this configuration in workers' caches.
    pub id: u64,
    pub filter: FilterConfig,
    /// Each metric family's id in Envoy (`stats::FAMILIES`, same order),
    /// or `None` where Envoy refused the definition.
    pub metrics: Vec<Option<usize>>,
    /// When Envoy handed it over (Unix seconds), for the tool router's status.
    pub loaded_at: u64,
}

/// Why a configuration is refused (Envoy then NACKs it, keeping the last).
pub fn parse(bytes: &[u8]) -> Result<FilterConfig, String> {
    let filter = serde_json::from_slice::<FilterConfig>(bytes).map_err(|e| format!("invalid configuration: {e}"))?;
    // The same check the wasm filter makes: the core takes it.
    Gateway::new(filter.clone()).map_err(|e| format!("invalid configuration: {e}"))?;
    Ok(filter)
}

/// How many configurations a worker keeps built: the current one and those
/// a reload left streams on.
const KEPT: usize = 4;

thread_local! {
    static BUILT: RefCell<VecDeque<(u64, Rc<Gateway>)>> = const { RefCell::new(VecDeque::new()) };
}

impl Config {
    pub fn new(filter: FilterConfig, metrics: Vec<Option<usize>>) -> Config {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let loaded_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Config { id: NEXT.fetch_add(1, Ordering::Relaxed), filter, metrics, loaded_at }
    }

    /// This worker's `Gateway` for this configuration, built on first use.
    /// `None` only if the configuration no longer builds (it did when made).
    pub fn gateway(&self) -> Option<Rc<Gateway>> {
        BUILT.with(|built| {
            let mut built = built.try_borrow_mut().ok()?;
            if let Some((_, gw)) = built.iter().find(|(id, _)| *id == self.id) {
                return Some(Rc::clone(gw));
            }
            let gw = Rc::new(Gateway::new(self.filter.clone()).ok()?.loaded(self.loaded_at));
            if built.len() >= KEPT {
                built.pop_front();
            }
            built.push_back((self.id, Rc::clone(&gw)));
            Some(gw)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_filter::fixtures::config;

    #[test]
    fn the_wasm_filters_json_is_taken_as_it_is() {
        let json = serde_json::to_vec(&config()).unwrap();
        assert_eq!(parse(&json).unwrap(), config());
        assert!(parse(b"{}").unwrap_err().starts_with("invalid configuration"));
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn each_worker_builds_a_configuration_once() {
        let c = Config::new(config(), vec![]);
        let a = c.gateway().unwrap();
        let b = c.gateway().unwrap();
        assert!(Rc::ptr_eq(&a, &b));
        // Another thread builds its own.
        let other = std::thread::scope(|s| s.spawn(|| c.gateway().map(|g| Rc::as_ptr(&g) as usize)).join().unwrap());
        assert!(other.is_some_and(|p| p != Rc::as_ptr(&a) as usize));
        // A newer configuration is another id; old ones are let go past KEPT.
        let newer: Vec<Config> = (0..KEPT).map(|_| Config::new(config(), vec![])).collect();
        assert!(newer.iter().all(|n| n.id != c.id));
        for n in &newer {
            n.gateway().unwrap();
        }
        assert!(!Rc::ptr_eq(&a, &c.gateway().unwrap()));
    }
}
