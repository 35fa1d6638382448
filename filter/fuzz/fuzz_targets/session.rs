//! Session ids as clients send them: any string. And, past the cipher,
//! any plaintext sealed with the gateway's own key.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use libfuzzer_sys::fuzz_target;
use mcp_filter::session::Sealer;
use mcp_filter_fuzz::{stateful_config, SESSION_KEY_ID, SESSION_SECRET};
use std::sync::OnceLock;

fn sealer() -> &'static Sealer {
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    SEALER.get_or_init(|| Sealer::new(&stateful_config().session).expect("fixture session keys"))
}

fuzz_target!(|data: &[u8]| {
    let now = 1_000_000;
    // As sent: most of these fail before decryption.
    let _ = sealer().open(&String::from_utf8_lossy(data), now);

    // Sealed, as only the gateway could: the JSON inside is fuzzed.
    let nonce = XNonce::default();
    let Ok(ciphertext) = XChaCha20Poly1305::new((&SESSION_SECRET).into()).encrypt(&nonce, data) else { return };
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&ciphertext);
    let token = format!("{SESSION_KEY_ID}.{}", URL_SAFE_NO_PAD.encode(blob));
    if let Ok(state) = sealer().open(&token, now) {
        // What opens seals again, and opens to the same.
        assert_eq!(sealer().open(&sealer().seal(&state), now), Ok(state));
    }
});
