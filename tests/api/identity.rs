//! People: login, access tokens and their attacks, refresh rotation and reuse, logout,
//! invitations, roles, the last owner, throttling and password rules.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{TestApp, JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, PASSWORD};
use keyward::crypto::jwt::Jwt;

/// Claims as keyward issues them, for `user` at session version 0 in a live session of theirs
/// (a real login), issued at the server's now.
async fn claims(app: &TestApp, user: &str) -> Value {
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1::uuid")
        .bind(user)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let issued = app.access_token(&email).await;
    let payload = issued.split('.').nth(1).unwrap();
    let issued: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let now = app.clock().now().timestamp();
    json!({"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": user, "exp": now + 600, "iat": now, "nbf": now,
           "jti": "j", "ver": 0, "sid": issued["sid"]})
}

fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/v1/me", token).await.status
}

#[sqlx::test]
async fn login_returns_a_bearer_access_token_and_a_refresh_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;

    let reply = app.login("ann@example.com", PASSWORD).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    assert!(reply.body["refresh_token"].as_str().unwrap().starts_with("kw_rt_"));
    let access = reply.body["access_token"].as_str().unwrap();
    let me = app.get("/v1/me", access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], "ann@example.com");
}

#[sqlx::test]
async fn email_is_matched_without_regard_to_case(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("Ann@Example.com", false).await;

    assert_eq!(app.login("ann@EXAMPLE.com", PASSWORD).await.status, StatusCode::OK);
}

#[sqlx::test]
async fn wrong_password_and_unknown_email_get_the_same_answer(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;

    let wrong_password = app.login("ann@example.com", "not the password at all").await;
    let unknown_email = app.login("bob@example.com", PASSWORD).await;

    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_email.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.body, unknown_email.body);
}

#[sqlx::test]
async fn failed_login_is_audited_without_the_password(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;

    app.login("ann@example.com", "hunter2-hunter2-hunter2").await;

    let events = app.get("/v1/audit?action=user.login_failed", &app.admin).await;
    assert_eq!(events.body["items"][0]["details"]["email"], "ann@example.com");
    assert!(!events.body.to_string().contains("hunter2"));
}

#[sqlx::test]
async fn five_failures_throttle_the_account_with_retry_after(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    for _ in 0..5 {
        assert_eq!(
            app.login("ann@example.com", "wrong wrong wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    let throttled = app.login("ann@example.com", PASSWORD).await;

    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = throttled.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    app.advance(15 * 60 + 1);
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status, StatusCode::OK);
}

#[sqlx::test]
async fn login_rehashes_a_password_stored_with_weaker_parameters(pool: PgPool) {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8 * 1024, 1, 1, None).unwrap(),
    )
    .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut rand::rngs::OsRng))
    .unwrap()
    .to_string();
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2::uuid")
        .bind(&weak)
        .bind(&user)
        .execute(&app.pool)
        .await
        .unwrap();

    assert_eq!(app.login("ann@example.com", PASSWORD).await.status, StatusCode::OK);

    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1::uuid")
        .bind(&user)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
}

#[sqlx::test]
async fn refresh_hands_out_a_new_pair_and_spends_the_old_refresh_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    let first = app.login("ann@example.com", PASSWORD).await.body;

    let second = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": first["refresh_token"]})),
        )
        .await;

    assert_eq!(second.status, StatusCode::OK);
    assert_ne!(second.body["refresh_token"], first["refresh_token"]);
    assert_eq!(
        me_status(&app, second.body["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn reusing_a_spent_refresh_token_revokes_the_whole_session_family(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    let first = app.login("ann@example.com", PASSWORD).await.body;
    let refresh = |token: Value| {
        app.call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": token})),
        )
    };
    let second = refresh(first["refresh_token"].clone()).await.body;

    let replay = refresh(first["refresh_token"].clone()).await;

    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    // The legitimate successor is dead too: the family was revoked.
    assert_eq!(
        refresh(second["refresh_token"].clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    let events = app.get("/v1/audit?action=session.refresh_reused", &app.admin).await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test]
async fn logout_invalidates_the_refresh_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    let session = app.login("ann@example.com", PASSWORD).await.body;

    let logout = app
        .call(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(json!({"refresh_token": session["refresh_token"]})),
        )
        .await;

    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let refresh = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": session["refresh_token"]})),
        )
        .await;
    assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn alg_none_token_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(&app, &user).await.to_string());

    assert_eq!(
        me_status(&app, &format!("{header}.{payload}.")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test]
async fn a_forged_token_with_the_right_secret_is_accepted_so_the_attack_tests_mean_something(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;

    assert_eq!(
        me_status(&app, &sign_hs256(&claims(&app, &user).await, JWT_SECRET)).await,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn expired_token_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    let token = app.access_token("ann@example.com").await;

    app.advance(901);

    assert_eq!(me_status(&app, &token).await, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn not_yet_valid_token_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;
    let mut future = claims(&app, &user).await;
    future["nbf"] = json!(future["iat"].as_i64().unwrap() + 300);

    assert_eq!(
        me_status(&app, &sign_hs256(&future, JWT_SECRET)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test]
async fn wrong_audience_or_issuer_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;
    let mut wrong_aud = claims(&app, &user).await;
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims(&app, &user).await;
    wrong_iss["iss"] = json!("evil");
    let mut no_aud = claims(&app, &user).await;
    no_aud.as_object_mut().unwrap().remove("aud");

    for forged in [wrong_aud, wrong_iss, no_aud] {
        assert_eq!(
            me_status(&app, &sign_hs256(&forged, JWT_SECRET)).await,
            StatusCode::UNAUTHORIZED,
            "{forged}"
        );
    }
}

#[sqlx::test]
async fn expiry_sent_as_a_string_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;
    let mut stringly = claims(&app, &user).await;
    stringly["exp"] = json!(stringly["exp"].to_string());

    assert_eq!(
        me_status(&app, &sign_hs256(&stringly, JWT_SECRET)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test]
async fn token_with_a_critical_header_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;
    let signed = sign_hs256(&claims(&app, &user).await, JWT_SECRET);
    let (_, rest) = signed.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#);
    let signing_input = format!("{header}.{payload}");
    let signature = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET).unwrap();
        mac.update(signing_input.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    };

    assert_eq!(
        me_status(&app, &format!("{signing_input}.{signature}")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test]
async fn tampered_payload_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;
    let admin = app.user("root@example.com", true).await;
    let token = app.access_token("ann@example.com").await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(payload["sub"], user.as_str());
    payload["sub"] = json!(admin);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );

    assert_eq!(me_status(&app, &tampered).await, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn hs256_token_signed_with_the_public_key_is_refused_when_eddsa_is_configured(pool: PgPool) {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let private_pem = signing.to_pkcs8_pem(Default::default()).unwrap();
    let public_pem = signing.verifying_key().to_public_key_pem(Default::default()).unwrap();
    let jwt = Jwt::eddsa_from_pem(&private_pem, JWT_ISSUER, JWT_AUDIENCE).unwrap();
    let app = TestApp::spawn_with_jwt(pool, jwt).await;
    let user = app.user("ann@example.com", false).await;
    assert_eq!(
        me_status(&app, &app.access_token("ann@example.com").await).await,
        StatusCode::OK
    );

    let confused = sign_hs256(&claims(&app, &user).await, public_pem.as_bytes());

    assert_eq!(me_status(&app, &confused).await, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn access_token_of_a_removed_member_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (user, token) = app.member(&tenant, "dev@example.com", "developer").await;
    assert_eq!(
        app.get(&format!("/v1/tenants/{tenant}/keys"), &token).await.status,
        StatusCode::OK
    );

    let removed = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/members/{user}"),
            Some(&app.admin),
            None,
        )
        .await;

    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/tenants/{tenant}/keys"), &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test]
async fn access_token_of_a_disabled_user_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;
    let token = app.access_token("ann@example.com").await;

    sqlx::query("UPDATE users SET disabled_at = now() WHERE id = $1::uuid")
        .bind(&user)
        .execute(&app.pool)
        .await
        .unwrap();

    assert_eq!(me_status(&app, &token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test]
async fn invitation_sets_the_password_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let invited = app
        .post(
            &format!("/v1/tenants/{tenant}/members"),
            &app.admin,
            json!({"email": "new@example.com", "role": "admin"}),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED);
    assert_eq!(invited.body["role"], "admin");
    let token = invited.body["invite_token"].as_str().unwrap();
    let accept = |password: &str| {
        app.call(
            Method::POST,
            "/v1/auth/accept-invite",
            None,
            Some(json!({"token": token, "password": password})),
        )
    };

    assert_eq!(accept(PASSWORD).await.status, StatusCode::OK);
    assert_eq!(accept("another long password").await.status, StatusCode::NOT_FOUND);
    let me = app.get("/v1/me", &app.access_token("new@example.com").await).await;
    assert_eq!(me.body["memberships"], json!([{"tenant_id": tenant, "role": "admin"}]));
}

#[sqlx::test]
async fn invitation_expires_after_72_hours(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let invited = app
        .post(
            &format!("/v1/tenants/{tenant}/members"),
            &app.admin,
            json!({"email": "new@example.com", "role": "admin"}),
        )
        .await;

    app.advance(72 * 3600 + 1);

    let accepted = app
        .call(
            Method::POST,
            "/v1/auth/accept-invite",
            None,
            Some(json!({"token": invited.body["invite_token"], "password": PASSWORD})),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn passwords_shorter_than_12_or_longer_than_1024_bytes_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let invited = app
        .post(
            &format!("/v1/tenants/{tenant}/members"),
            &app.admin,
            json!({"email": "new@example.com", "role": "admin"}),
        )
        .await;
    let token = invited.body["invite_token"].clone();

    for password in ["elevenchars".to_owned(), "x".repeat(1025)] {
        let reply = app
            .call(
                Method::POST,
                "/v1/auth/accept-invite",
                None,
                Some(json!({"token": token, "password": password})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.body["errors"][0]["field"], "password");
    }
}

#[sqlx::test]
async fn the_last_owner_cannot_be_removed_or_demoted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (owner, _) = app.member(&tenant, "owner@example.com", "owner").await;
    let path = format!("/v1/tenants/{tenant}/members/{owner}");

    assert_eq!(
        app.patch(&path, &app.admin, json!({"role": "admin"})).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.call(Method::DELETE, &path, Some(&app.admin), None).await.status,
        StatusCode::CONFLICT
    );

    app.member(&tenant, "second@example.com", "owner").await;
    assert_eq!(
        app.patch(&path, &app.admin, json!({"role": "admin"})).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn inviting_an_existing_member_again_is_a_conflict(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.member(&tenant, "dev@example.com", "developer").await;

    let again = app
        .post(
            &format!("/v1/tenants/{tenant}/members"),
            &app.admin,
            json!({"email": "DEV@example.com", "role": "admin"}),
        )
        .await;

    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[sqlx::test]
async fn a_member_sees_only_their_own_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (_, token) = app.member(&acme, "ann@example.com", "owner").await;

    assert_eq!(
        app.get(&format!("/v1/tenants/{acme}/keys"), &token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/v1/tenants/{globex}/keys"), &token).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/v1/tenants/{globex}/audit"), &token).await.status,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test]
async fn audit_exports_stream_as_ndjson_and_csv(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.key(&tenant, json!({"name": "a, \"quoted\" name"})).await;
    let (_, auditor) = app.member(&tenant, "aud@example.com", "auditor").await;
    let path = format!("{}/v1/tenants/{tenant}/audit", app.base);

    let ndjson = app
        .client
        .get(&path)
        .bearer_auth(&auditor)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await.unwrap();
    let actions: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "key.created",
            "member.invited",
            "user.invite_accepted"
        ]
    );

    let csv = app
        .client
        .get(&path)
        .bearer_auth(&auditor)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id,occurred_at,tenant_id,actor_kind,actor_id,action,target_kind,target_id,outcome,request_id,ip,user_agent,details,prev_hash,hash"
    );
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.contains(r#"a, \""quoted\"" name"#), "{csv}");
}

#[sqlx::test]
async fn joining_another_tenant_works_once_accepted_without_a_new_login(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (_, token) = app.member(&acme, "ann@example.com", "developer").await;
    let invited = app
        .post(
            &format!("/v1/tenants/{globex}/members"),
            &app.admin,
            json!({"email": "ann@example.com", "role": "auditor"}),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED);
    assert_eq!(
        app.get(&format!("/v1/tenants/{globex}/keys"), &token).await.status,
        StatusCode::NOT_FOUND
    );

    let accepted = app
        .accept_invite(invited.body["invite_token"].as_str().unwrap(), None, Some(&token))
        .await;

    assert_eq!(accepted.status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/v1/tenants/{globex}/keys"), &token).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn an_invitation_cannot_set_the_password_of_an_account_that_has_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let victim_tenant = app.tenant("bigcorp").await;
    let attacker_tenant = app.tenant("mallory").await;
    app.member(&victim_tenant, "ceo@bigcorp.example", "owner").await;
    let (_, attacker) = app.member(&attacker_tenant, "mallory@example.com", "owner").await;
    let invited = app
        .post(
            &format!("/v1/tenants/{attacker_tenant}/members"),
            &attacker,
            json!({"email": "ceo@bigcorp.example", "role": "developer"}),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED);

    let takeover = app
        .call(
            Method::POST,
            "/v1/auth/accept-invite",
            None,
            Some(json!({"token": invited.body["invite_token"], "password": "mallory's own password"})),
        )
        .await;

    assert_eq!(takeover.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("ceo@bigcorp.example", "mallory's own password").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.login("ceo@bigcorp.example", PASSWORD).await.status, StatusCode::OK);
}

#[sqlx::test]
async fn a_stale_invitation_cannot_reset_a_password_set_through_another(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let victim_tenant = app.tenant("bigcorp").await;
    let attacker_tenant = app.tenant("mallory").await;
    let (_, attacker) = app.member(&attacker_tenant, "mallory@example.com", "owner").await;
    let early = app
        .post(
            &format!("/v1/tenants/{attacker_tenant}/members"),
            &attacker,
            json!({"email": "cfo@bigcorp.example", "role": "developer"}),
        )
        .await;
    app.member(&victim_tenant, "cfo@bigcorp.example", "owner").await;

    let stale = app
        .call(
            Method::POST,
            "/v1/auth/accept-invite",
            None,
            Some(json!({"token": early.body["invite_token"], "password": "mallory's own password"})),
        )
        .await;

    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("cfo@bigcorp.example", PASSWORD).await.status, StatusCode::OK);
}

#[sqlx::test]
async fn an_invited_person_is_a_member_only_after_accepting(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let invited = app
        .post(
            &format!("/v1/tenants/{tenant}/members"),
            &app.admin,
            json!({"email": "new@example.com", "role": "admin"}),
        )
        .await;

    assert_eq!(invited.status, StatusCode::CREATED);
    let members = app.get(&format!("/v1/tenants/{tenant}/members"), &app.admin).await;
    assert_eq!(members.body["items"], json!([]));
}

#[sqlx::test]
async fn parallel_guesses_cannot_outrun_the_throttle(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;

    let guesses = (0..15).map(|i| {
        app.login(
            "ann@example.com",
            if i % 2 == 0 {
                "wrong guess one!"
            } else {
                "wrong guess two!"
            },
        )
    });
    let replies = futures_util::future::join_all(guesses).await;

    let unauthorized = replies.iter().filter(|r| r.status == StatusCode::UNAUTHORIZED).count();
    let throttled = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(unauthorized <= 5, "{unauthorized} guesses were checked");
    assert_eq!(unauthorized + throttled, 15);
}

#[sqlx::test]
async fn a_password_typed_into_the_email_field_is_not_recorded(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.login("my secret password", "my secret password").await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let events = app.get("/v1/audit", &app.admin).await;
    assert!(!events.body.to_string().contains("my secret password"));
    // It counts against the address (see sessions.rs), but its text is not kept.
    let stored: Vec<String> = sqlx::query_scalar("SELECT email FROM login_failures")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, [""]);
}

#[sqlx::test]
async fn an_export_larger_than_one_page_holds_every_event_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, tenant_id, actor_kind, actor_id, action, outcome, hash)
         SELECT now(), $1::uuid, 'system', 'test', 'test.bulk', 'success', sha256(i::text::bytea)
         FROM generate_series(1, 1200) AS i",
    )
    .bind(&tenant)
    .execute(&app.pool)
    .await
    .unwrap();

    let text = app
        .client
        .get(format!("{}/v1/tenants/{tenant}/audit?action=test.bulk", app.base))
        .bearer_auth(&app.admin)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let ids: Vec<i64> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1200);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first, each once");
}

#[sqlx::test]
async fn the_cli_disables_a_user_ending_their_sessions_and_enables_them_again(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    let session = app.login("ann@example.com", PASSWORD).await.body;
    let run = |command: &'static str| {
        let url = app.database_url();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
                .args(["admin", command, "--email", "ann@example.com"])
                .env("DATABASE_URL", url)
                .output()
                .unwrap()
        })
    };

    assert!(run("disable-user").await.unwrap().status.success());

    assert_eq!(
        me_status(&app, session["access_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
    let refresh = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": session["refresh_token"]})),
        )
        .await;
    assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(run("enable-user").await.unwrap().status.success());
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status, StatusCode::OK);
}

#[sqlx::test]
async fn listing_members_with_a_bad_limit_or_cursor_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.member(&tenant, "ann@example.com", "owner").await;

    let too_many = app
        .get(&format!("/v1/tenants/{tenant}/members?limit=101"), &app.admin)
        .await;
    let bad_cursor = app
        .get(&format!("/v1/tenants/{tenant}/members?cursor=not-a-cursor"), &app.admin)
        .await;

    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(too_many.body["errors"][0]["field"], "limit");
    assert_eq!(bad_cursor.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_cursor.body["errors"][0]["field"], "cursor");
}
