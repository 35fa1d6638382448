//! One JSON-RPC connection to a server (a child's stdio, or a legacy SSE
//! session) shared by every request the gateway sends it.
//!
//! Clients choose their own request ids and progress tokens, so two of them
//! may collide on the shared connection. Each request is sent with an id of
//! the pipe's own (and its progress token, if any, replaced by that id); what
//! comes back for it is routed by that id and given the client's values back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::mpsc;

/// What the pipe does with a message nobody is waiting for.
#[derive(Debug, PartialEq)]
pub enum Unrouted {
    /// `notifications/{tools,prompts,resources}/list_changed`.
    ListChanged,
    /// A log message or other notification, for the gateway's log.
    Notification(Value),
    /// A request from the server: the answer to send it.
    Answer(Value),
    /// A response to nothing in flight (the call was abandoned).
    Stray,
}

struct Waiter {
    id: Value,
    token: Option<Value>,
    tx: mpsc::UnboundedSender<Value>,
}

pub struct Pipe {
    server: String,
    outgoing: mpsc::Sender<String>,
    waiting: Mutex<HashMap<u64, Waiter>>,
    next: AtomicU64,
}

/// One request in flight: the messages for it, in order, ending with its
/// response. Dropping it forgets the request.
pub struct Call {
    pipe: Arc<Pipe>,
    key: u64,
    pub messages: mpsc::UnboundedReceiver<Value>,
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Ok(mut w) = self.pipe.waiting.lock() {
            w.remove(&self.key);
        }
    }
}

impl Pipe {
    pub fn new(server: &str, outgoing: mpsc::Sender<String>) -> Self {
        Pipe { server: server.to_string(), outgoing, waiting: Mutex::new(HashMap::new()), next: AtomicU64::new(1) }
    }

    /// Sends a request (`message` has an `id` and a `method`).
    pub async fn call(self: &Arc<Self>, mut message: Value) -> Result<Call, super::Error> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        if let Some(obj) = message.as_object_mut() {
            obj.insert("id".into(), json!(key));
        }
        let token = message.pointer_mut("/params/_meta").and_then(Value::as_object_mut).and_then(|meta| {
            let token = meta.remove("progressToken")?;
            meta.insert("progressToken".into(), json!(key));
            Some(token)
        });
        let (tx, messages) = mpsc::unbounded_channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(key, Waiter { id, token, tx });
        }
        let call = Call { pipe: Arc::clone(self), key, messages };
        self.send(&message).await?;
        Ok(call)
    }

    /// Sends a notification or a response.
    pub async fn send(&self, message: &Value) -> Result<(), super::Error> {
        self.outgoing.send(message.to_string()).await.map_err(|_| super::Error::Gone(self.server.clone()))
    }

    /// Sends without waiting; false when the connection is full or gone.
    pub fn try_send(&self, message: &Value) -> bool {
        self.outgoing.try_send(message.to_string()).is_ok()
    }

    /// Routes one message from the server.
    pub fn dispatch(&self, mut message: Value) -> Option<Unrouted> {
        let method = message.get("method").and_then(Value::as_str).map(str::to_string);
        let id = message.get("id").cloned();
        match (method, id) {
            // A response: to the call that waits for it, with the client's id.
            (None, Some(id)) => {
                let waiter = id.as_u64().and_then(|k| self.waiting.lock().ok()?.remove(&k));
                let Some(w) = waiter else { return Some(Unrouted::Stray) };
                if let Some(obj) = message.as_object_mut() {
                    obj.insert("id".into(), w.id);
                }
                let _ = w.tx.send(message);
                None
            }
            // A request from the server: answered here, since the client
            // cannot be reached through a shared connection.
            (Some(method), Some(id)) => {
                let answer = if method == "ping" {
                    json!({ "jsonrpc": "2.0", "id": id, "result": {} })
                } else {
                    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": format!("{method}: the gateway does not relay requests from servers it reaches over a shared connection") } })
                };
                Some(Unrouted::Answer(answer))
            }
            (Some(method), None) if method == "notifications/progress" => {
                let key = message.pointer("/params/progressToken").and_then(Value::as_u64);
                let waiting = self.waiting.lock().ok();
                let Some(w) = key.and_then(|k| waiting.as_ref()?.get(&k)) else { return Some(Unrouted::Stray) };
                if let (Some(token), Some(params)) = (&w.token, message.get_mut("params").and_then(Value::as_object_mut)) {
                    params.insert("progressToken".into(), token.clone());
                }
                let _ = w.tx.send(message);
                None
            }
            (Some(method), None) if method.ends_with("/list_changed") && method != "notifications/roots/list_changed" => {
                Some(Unrouted::ListChanged)
            }
            (Some(_), None) => Some(Unrouted::Notification(message)),
            (None, None) => Some(Unrouted::Stray),
        }
    }

    /// How many calls wait for an answer.
    pub fn in_flight(&self) -> usize {
        self.waiting.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// Ends every call in flight with an error naming the server.
    pub fn fail_all(&self, why: &str) {
        let waiters: Vec<Waiter> = match self.waiting.lock() {
            Ok(mut w) => w.drain().map(|(_, v)| v).collect(),
            Err(_) => return,
        };
        for w in waiters {
            let error = json!({ "jsonrpc": "2.0", "id": w.id, "error": { "code": -32603, "message": format!("server {:?} {why} during the call", self.server) } });
            let _ = w.tx.send(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn colliding_client_ids_each_get_their_answer() {
        let (tx, mut wire) = mpsc::channel(8);
        let pipe = Arc::new(Pipe::new("s", tx));
        let mut a = pipe
            .call(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"_meta": {"progressToken": "p"}}}))
            .await
            .unwrap();
        let mut b = pipe.call(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"})).await.unwrap();
        let sent_a: Value = serde_json::from_str(&wire.recv().await.unwrap()).unwrap();
        let sent_b: Value = serde_json::from_str(&wire.recv().await.unwrap()).unwrap();
        assert_ne!(sent_a["id"], sent_b["id"]);
        assert_eq!(sent_a["params"]["_meta"]["progressToken"], sent_a["id"]);
        assert_eq!(
            pipe.dispatch(
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": sent_a["id"], "progress": 1}})
            ),
            None
        );
        assert_eq!(pipe.dispatch(json!({"jsonrpc": "2.0", "id": sent_b["id"], "result": {"b": true}})), None);
        assert_eq!(pipe.dispatch(json!({"jsonrpc": "2.0", "id": sent_a["id"], "result": {"a": true}})), None);
        assert_eq!(a.messages.recv().await.unwrap()["params"]["progressToken"], "p");
        assert_eq!(a.messages.recv().await.unwrap(), json!({"jsonrpc": "2.0", "id": 1, "result": {"a": true}}));
        assert_eq!(b.messages.recv().await.unwrap(), json!({"jsonrpc": "2.0", "id": 1, "result": {"b": true}}));
        assert_eq!(pipe.dispatch(json!({"jsonrpc": "2.0", "id": 99, "result": {}})), Some(Unrouted::Stray));
    }

    #[tokio::test]
    async fn the_server_is_answered_and_heard() {
        let (tx, _wire) = mpsc::channel(8);
        let pipe = Pipe::new("s", tx);
        assert_eq!(
            pipe.dispatch(json!({"jsonrpc": "2.0", "id": 5, "method": "ping"})),
            Some(Unrouted::Answer(json!({"jsonrpc": "2.0", "id": 5, "result": {}})))
        );
        assert!(
            matches!(pipe.dispatch(json!({"jsonrpc": "2.0", "id": 6, "method": "roots/list"})), Some(Unrouted::Answer(a)) if a["error"]["code"] == -32601)
        );
        assert_eq!(pipe.dispatch(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})), Some(Unrouted::ListChanged));
        assert!(matches!(
            pipe.dispatch(json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}})),
            Some(Unrouted::Notification(_))
        ));
    }

    #[tokio::test]
    async fn calls_in_flight_fail_with_the_servers_name() {
        let (tx, _wire) = mpsc::channel(8);
        let pipe = Arc::new(Pipe::new("time", tx));
        let mut a = pipe.call(json!({"jsonrpc": "2.0", "id": "x", "method": "tools/call"})).await.unwrap();
        pipe.fail_all("exited (signal 9)");
        let e = a.messages.recv().await.unwrap();
        assert_eq!(e["id"], "x");
        assert_eq!(e["error"]["message"], "server \"time\" exited (signal 9) during the call");
    }
}
