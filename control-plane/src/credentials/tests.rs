use std::time::UNIX_EPOCH;

use super::*;

fn oauth(auth: ClientAuth) -> OAuthSettings {
    OAuthSettings {
        token_url: Some("https://as.example/token".into()),
        issuer: None,
        client_id: "gate way".into(),
        client_secret: "s3cr:t&".into(),
        client_auth: auth,
        grant: Grant::ClientCredentials,
        scopes: vec!["crm.read".into(), "crm.write".into()],
        audience: Some("crm".into()),
        resource: None,
    }
}

#[test]
fn the_form_asks_for_client_credentials_with_scopes_audience_and_resource() {
    let body = form(&oauth(ClientAuth::Basic), Some("https://crm.example/mcp"), None);
    assert_eq!(body, "grant_type=client_credentials&scope=crm.read+crm.write&audience=crm&resource=https%3A%2F%2Fcrm.example%2Fmcp");
    let post = form(&oauth(ClientAuth::Post), None, None);
    assert!(post.ends_with("&client_id=gate+way&client_secret=s3cr%3At%26"), "{post}");
}

#[test]
fn basic_authentication_encodes_id_and_secret_first() {
    let header = basic("gate way", "s3cr:t&");
    let decoded = base64::engine::general_purpose::STANDARD.decode(header.strip_prefix("Basic ").unwrap()).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "gate+way:s3cr%3At%26");
}

#[test]
fn a_token_answer_gives_the_token_and_when_to_stop_sending_it() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000);
    let t = token_of(200, r#"{"access_token":"abc.def","token_type":"bearer","expires_in":3600}"#, now).unwrap();
    assert_eq!(t.access_token, "abc.def");
    assert_eq!(t.expires_at, now + Duration::from_secs(3600));
    assert_eq!(t.valid_until, now + Duration::from_secs(3570), "30 s early at most");
    let short = token_of(200, r#"{"access_token":"x","token_type":"Bearer","expires_in":"10"}"#, now).unwrap();
    assert_eq!(short.valid_until, now + Duration::from_secs(8), "2 s early at least");
    let tiny = token_of(200, r#"{"access_token":"x","token_type":"Bearer","expires_in":2}"#, now).unwrap();
    assert_eq!(tiny.valid_until, now + Duration::from_secs(1), "half of a very short life");
    let unstated = token_of(200, r#"{"access_token":"x","token_type":"Bearer"}"#, now).unwrap();
    assert_eq!(unstated.expires_at, now + UNSTATED_LIFETIME);
}

#[test]
fn a_refusal_or_an_odd_answer_is_said_in_words() {
    let now = SystemTime::now();
    let refused = token_of(401, r#"{"error":"invalid_client","error_description":"bad\nsecret"}"#, now).err().unwrap();
    assert_eq!(refused, "refused the gateway's client (HTTP 401): invalid_client: badsecret");
    assert_eq!(token_of(502, "<html>", now).err().unwrap(), "answered HTTP 502 without an OAuth error");
    assert!(token_of(200, "{}", now).err().unwrap().contains("no access_token"));
    assert!(token_of(200, r#"{"access_token":"x","token_type":"mac"}"#, now).err().unwrap().contains("Bearer tokens only"));
    assert!(token_of(200, r#"{"access_token":"a b","token_type":"Bearer"}"#, now).err().unwrap().contains("header cannot carry"));
    assert!(token_of(200, r#"{"access_token":"x","token_type":"Bearer","expires_in":0}"#, now).err().unwrap().contains("at once"));
    assert_eq!(shown(&"x".repeat(500)).len(), 200);
}

#[test]
fn tokens_are_renewed_three_quarters_through_their_life() {
    assert_eq!(renew_after(Duration::from_secs(3600), Duration::from_secs(3570)), Duration::from_secs(2700));
    assert_eq!(renew_after(Duration::from_millis(400), Duration::ZERO), Duration::from_secs(1));
    // A short token is renewed a second before it stops being sent, not after.
    assert_eq!(renew_after(Duration::from_secs(6), Duration::from_secs(4)), Duration::from_secs(3));
}

#[test]
fn a_handle_says_what_compile_and_servers_get() {
    let h = TokenHandle::default();
    assert_eq!(h.credential(), Credential::Unavailable("the gateway has not got a token for it yet".into()));
    assert_eq!(h.status(false).state, CredentialState::Pending);
    assert_eq!(h.bearer(), None);
    let now = SystemTime::now();
    let token = Token { access_token: "tok".into(), valid_until: now + Duration::from_secs(60), expires_at: now + Duration::from_secs(70) };
    h.update(|s| s.token = Some(token));
    assert_eq!(h.credential(), Credential::Token("tok".into()));
    assert_eq!(h.bearer().as_deref(), Some("Bearer tok"));
    assert_eq!(h.status(false).state, CredentialState::Valid);
    h.update(|s| s.last_error = Some("token endpoint x refused".into()));
    assert_eq!(h.status(false).state, CredentialState::RefreshFailing, "the token in hand still serves");
    assert_eq!(h.credential(), Credential::Token("tok".into()));
    h.update(|s| s.token.as_mut().unwrap().valid_until = now - Duration::from_secs(1));
    assert_eq!(h.status(false).state, CredentialState::Failed);
    assert_eq!(h.credential(), Credential::Unavailable("token endpoint x refused".into()));
    assert_eq!(h.bearer(), None);
    assert!(!format!("{h:?}").contains("tok"));
    assert!(!serde_json::to_string(&h.status(false)).unwrap().contains("\"tok\""));
}
