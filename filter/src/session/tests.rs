use super::*;
use crate::config::SessionKey;

fn cfg(active: &str, keys: &[(&str, u8)]) -> SessionConfig {
    SessionConfig {
        active_key: active.into(),
        keys: keys.iter().map(|(id, b)| SessionKey { id: id.to_string(), secret_hex: format!("{b:02x}").repeat(32) }).collect(),
        ttl_seconds: 100,
        max_id_bytes: 4096,
    }
}

fn state(n: u64) -> SessionState {
    let mut upstreams = BTreeMap::new();
    upstreams.insert("everything".into(), UpstreamSession { id: Some("abc".into()), version: Some("2025-06-18".into()), error: None });
    upstreams.insert("echo".into(), UpstreamSession { id: None, version: None, error: Some("connect failed".into()) });
    SessionState { issued_at: 1000, entropy: n, version: "2025-11-25".into(), upstreams, principal: None, capabilities: None }
}

#[test]
fn round_trips_and_expires() {
    let s = Sealer::new(&cfg("k1", &[("k1", 1)])).unwrap();
    let token = s.seal(&state(1));
    assert!(token.starts_with("k1."));
    assert_eq!(s.open(&token, 1050), Ok(state(1)));
    assert_eq!(s.open(&token, 1101), Err(SessionError::Expired));
    assert_ne!(s.seal(&state(2)), token, "different sessions get different ids");
}

#[test]
fn rotation_keeps_old_sessions() {
    let old = Sealer::new(&cfg("k1", &[("k1", 1)])).unwrap().seal(&state(1));
    let rotated = Sealer::new(&cfg("k2", &[("k1", 1), ("k2", 2)])).unwrap();
    assert_eq!(rotated.open(&old, 1000), Ok(state(1)));
    assert!(rotated.seal(&state(1)).starts_with("k2."));
    let dropped = Sealer::new(&cfg("k2", &[("k2", 2)])).unwrap();
    assert_eq!(dropped.open(&old, 1000), Err(SessionError::UnknownKey));
}

#[test]
fn refuses_tampering_and_garbage() {
    let s = Sealer::new(&cfg("k1", &[("k1", 1)])).unwrap();
    let token = s.seal(&state(1));
    let mut bytes = token.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(s.open(std::str::from_utf8(&bytes).unwrap(), 1000), Err(SessionError::Tampered));
    let other_key = Sealer::new(&cfg("k1", &[("k1", 9)])).unwrap();
    assert_eq!(other_key.open(&token, 1000), Err(SessionError::Tampered));
    for bad in ["", "k1", "k1.", "k1.!!!", "k1.AAAA", "zz.AAAA", "k1.k1.k1"] {
        assert!(s.open(bad, 1000).is_err(), "{bad:?}");
    }
}

#[test]
fn checks_keys() {
    assert!(matches!(Sealer::new(&cfg("k9", &[("k1", 1)])), Err(SessionError::NoActiveKey(_))));
    let mut c = cfg("k1", &[("k1", 1)]);
    c.keys[0].secret_hex = "zz".repeat(32);
    assert!(matches!(Sealer::new(&c), Err(SessionError::BadKey(_))));
}

#[test]
fn the_length_of_an_id_is_known_before_it_is_sealed() {
    let sealer = Sealer::new(&cfg("a", &[("a", 1)])).unwrap();
    for n in 0..5 {
        let mut st = state(n);
        st.upstreams.extend(
            (0..n * 7).map(|i| (format!("server-{i}"), UpstreamSession { id: Some("x".repeat(i as usize)), version: None, error: None })),
        );
        let plaintext = serde_json::to_vec(&st).unwrap().len();
        assert_eq!(sealer.sealed_len(plaintext), sealer.seal(&st).len());
    }
}
