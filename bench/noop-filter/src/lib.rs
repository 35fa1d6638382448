//! The benchmarks' `envoy-noop-wasm` target (bench/run.py): a proxy-wasm
//! filter that does what any filter routing on an MCP request's body must,
//! and nothing else. It reads the request headers in one host call (as the
//! gateway's glue does), holds the request until the body is in, reads the
//! body into the VM, and lets the request go on unchanged. No configuration,
//! no parsing, no response callbacks.
//!
//! Between plain Envoy and this filter is the price of the wasm VM and the
//! body's copy into it; between this filter and the gateway, the gateway's
//! own work.
#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request { headers: 0 }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    /// How many request headers came (read, so the call is not optimised away).
    headers: usize,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.headers = self.get_http_request_headers_bytes().len();
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        std::hint::black_box((body, self.headers));
        Action::Continue
    }
}
