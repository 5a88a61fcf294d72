//! Invitations: who may accept them and how, what inviting reveals, replacement, cancellation,
//! voiding on removal, and that nobody confers a role carrying more than they hold.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, PASSWORD};
use keyward::domain::permissions::Permission;

fn token_of(reply: &crate::helpers::Reply) -> String {
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["invite_token"].as_str().unwrap().to_owned()
}

async fn memberships(app: &TestApp, access_token: &str) -> serde_json::Value {
    app.get("/v1/me", access_token).await.body["memberships"].clone()
}

#[sqlx::test]
async fn invite_to_existing_account_cannot_test_passwords(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let attacker_tenant = app.tenant("mallory").await;
    app.user("root@platform.example", true).await;
    let (_, attacker) = app.member(&attacker_tenant, "mallory@example.com", "owner").await;
    let invite = token_of(
        &app.invite(&attacker_tenant, &attacker, "root@platform.example", "auditor")
            .await,
    );

    let right_password = app.accept_invite(&invite, Some(PASSWORD), None).await;
    let wrong_password = app.accept_invite(&invite, Some("not the password at all"), None).await;

    assert_eq!(right_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(right_password.body, wrong_password.body);
    assert!(
        right_password.body["detail"]
            .as_str()
            .unwrap()
            .contains("log in as that account"),
        "{:?}",
        right_password.body
    );
    let root = app.access_token("root@platform.example").await;
    assert_eq!(memberships(&app, &root).await, json!([]));
}

#[sqlx::test]
async fn existing_account_accepts_an_invitation_while_logged_in(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.user("ann@example.com", false).await;
    let ann = app.access_token("ann@example.com").await;
    let invite = token_of(&app.invite(&tenant, &app.admin, "ann@example.com", "developer").await);

    let accepted = app.accept_invite(&invite, None, Some(&ann)).await;

    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    assert_eq!(
        memberships(&app, &ann).await,
        json!([{"tenant_id": tenant, "role": "developer"}])
    );
}

#[sqlx::test]
async fn an_invitation_for_one_account_cannot_be_accepted_by_another_logged_in_account(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.user("ann@example.com", false).await;
    app.user("bob@example.com", false).await;
    let bob = app.access_token("bob@example.com").await;
    let invite = token_of(&app.invite(&tenant, &app.admin, "ann@example.com", "owner").await);

    let stolen = app.accept_invite(&invite, None, Some(&bob)).await;

    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(memberships(&app, &bob).await, json!([]));
}

#[sqlx::test]
async fn invite_response_does_not_reveal_whether_the_account_existed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.user("Existing.Person@Example.com", false).await;

    let existing = app
        .invite(&tenant, &app.admin, "existing.person@example.com", "developer")
        .await;
    let new = app
        .invite(&tenant, &app.admin, "new.person@example.com", "developer")
        .await;

    assert_eq!(existing.status, StatusCode::CREATED);
    assert_eq!(new.status, StatusCode::CREATED);
    let fields = |reply: &crate::helpers::Reply| {
        let mut keys: Vec<String> = reply.body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(fields(&existing), fields(&new));
    assert!(existing.body.get("user_id").is_none());
    assert_eq!(existing.body["email"], "existing.person@example.com");
}

#[sqlx::test]
async fn a_new_account_must_choose_its_first_password_when_accepting(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let invite = token_of(&app.invite(&tenant, &app.admin, "new@example.com", "developer").await);

    let without = app.accept_invite(&invite, None, None).await;
    let with = app.accept_invite(&invite, Some(PASSWORD), None).await;

    assert_eq!(without.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(without.body["errors"][0]["field"], "password");
    assert_eq!(with.status, StatusCode::OK);
    assert_eq!(app.login("new@example.com", PASSWORD).await.status, StatusCode::OK);
}

#[sqlx::test]
async fn failed_accepts_are_audited_and_the_fifth_voids_the_invitation(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.user("ann@example.com", false).await;
    let invite = token_of(&app.invite(&tenant, &app.admin, "ann@example.com", "developer").await);

    for _ in 0..5 {
        let guess = app.accept_invite(&invite, Some("a guessed password"), None).await;
        assert_eq!(guess.status, StatusCode::UNAUTHORIZED);
    }
    let ann = app.access_token("ann@example.com").await;
    let too_late = app.accept_invite(&invite, None, Some(&ann)).await;

    assert_eq!(too_late.status, StatusCode::NOT_FOUND);
    let events = app
        .get(
            &format!("/v1/tenants/{tenant}/audit?action=user.invite_accept_failed"),
            &app.admin,
        )
        .await;
    let items = events.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["outcome"], "denied");
    assert!(!events.body.to_string().contains("a guessed password"));
}

#[sqlx::test]
async fn made_up_invite_tokens_are_not_found_and_record_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.tenant("acme").await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    let reply = app
        .accept_invite("kw_inv_00000000000000000000000000000000", Some(PASSWORD), None)
        .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(after, before);
}

#[sqlx::test]
async fn a_new_invitation_replaces_the_pending_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let first = token_of(&app.invite(&tenant, &app.admin, "eve@example.com", "owner").await);
    let second = token_of(&app.invite(&tenant, &app.admin, "eve@example.com", "auditor").await);

    assert_eq!(
        app.accept_invite(&first, Some(PASSWORD), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.accept_invite(&second, Some(PASSWORD), None).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn a_removed_member_cannot_return_through_an_earlier_invitation(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let as_owner = token_of(&app.invite(&tenant, &app.admin, "eve@example.com", "owner").await);
    let as_auditor = token_of(&app.invite(&tenant, &app.admin, "eve@example.com", "auditor").await);
    let accepted = app.accept_invite(&as_auditor, Some(PASSWORD), None).await;
    let eve = accepted.body["user_id"].as_str().unwrap().to_owned();
    let removed = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/members/{eve}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);

    let eve_token = app.access_token("eve@example.com").await;
    let comeback = app.accept_invite(&as_owner, None, Some(&eve_token)).await;

    assert_eq!(comeback.status, StatusCode::NOT_FOUND);
    assert_eq!(memberships(&app, &eve_token).await, json!([]));
}

#[sqlx::test]
async fn removing_a_member_voids_their_pending_invitations(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (eve, _) = app.member(&tenant, "eve@example.com", "developer").await;
    // An invitation left pending from before this release (when invitations were not replaced).
    let stale = token_of(&app.invite(&tenant, &app.admin, "stale@example.com", "owner").await);
    sqlx::query("UPDATE invites SET user_id = $1::uuid WHERE email = 'stale@example.com'")
        .bind(&eve)
        .execute(&app.pool)
        .await
        .unwrap();

    let removed = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/members/{eve}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let eve_token = app.access_token("eve@example.com").await;

    assert_eq!(
        app.accept_invite(&stale, None, Some(&eve_token)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test]
async fn changing_a_members_role_voids_their_pending_invitations(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (eve, _) = app.member(&tenant, "eve@example.com", "developer").await;
    token_of(&app.invite(&tenant, &app.admin, "stale@example.com", "owner").await);
    sqlx::query("UPDATE invites SET user_id = $1::uuid WHERE email = 'stale@example.com'")
        .bind(&eve)
        .execute(&app.pool)
        .await
        .unwrap();

    let listed_before = app.get(&format!("/v1/tenants/{tenant}/invitations"), &app.admin).await;
    assert_eq!(listed_before.body["items"].as_array().unwrap().len(), 1);

    let changed = app
        .patch(
            &format!("/v1/tenants/{tenant}/members/{eve}"),
            &app.admin,
            json!({"role": "auditor"}),
        )
        .await;

    assert_eq!(changed.status, StatusCode::OK);
    let listed = app.get(&format!("/v1/tenants/{tenant}/invitations"), &app.admin).await;
    assert_eq!(listed.body["items"], json!([]));
}

#[sqlx::test]
async fn pending_invitations_are_listed_for_those_who_may_invite(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, owner) = app.member(&tenant, "owner@example.com", "owner").await;
    let (_, admin) = app.member(&tenant, "admin@example.com", "admin").await;
    app.invite(&tenant, &owner, "New.Person@example.com", "developer").await;

    let listed = app.get(&format!("/v1/tenants/{tenant}/invitations"), &owner).await;
    let refused = app.get(&format!("/v1/tenants/{tenant}/invitations"), &admin).await;

    assert_eq!(listed.status, StatusCode::OK);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["email"], "New.Person@example.com");
    assert_eq!(items[0]["role"], "developer");
    assert!(!listed.body.to_string().contains("kw_inv_"));
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn a_cancelled_invitation_cannot_be_accepted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let invited = app.invite(&tenant, &app.admin, "new@example.com", "owner").await;
    let invite = token_of(&invited);
    let id = invited.body["id"].as_str().unwrap();

    let cancelled = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/invitations/{id}"),
            Some(&app.admin),
            None,
        )
        .await;
    let again = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/invitations/{id}"),
            Some(&app.admin),
            None,
        )
        .await;

    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.accept_invite(&invite, Some(PASSWORD), None).await.status,
        StatusCode::NOT_FOUND
    );
    let events = app
        .get(
            &format!("/v1/tenants/{tenant}/audit?action=member.invitation_cancelled"),
            &app.admin,
        )
        .await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test]
async fn another_tenants_invitations_are_not_found(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (_, globex_owner) = app.member(&globex, "owner@globex.example", "owner").await;
    let invited = app.invite(&acme, &app.admin, "new@example.com", "owner").await;
    let id = invited.body["id"].as_str().unwrap();

    let listed = app.get(&format!("/v1/tenants/{acme}/invitations"), &globex_owner).await;
    let cancelled = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{acme}/invitations/{id}"),
            Some(&globex_owner),
            None,
        )
        .await;
    let cross = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{globex}/invitations/{id}"),
            Some(&globex_owner),
            None,
        )
        .await;

    assert_eq!(listed.status, StatusCode::NOT_FOUND);
    assert_eq!(cancelled.status, StatusCode::NOT_FOUND);
    assert_eq!(cross.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.accept_invite(invited.body["invite_token"].as_str().unwrap(), Some(PASSWORD), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn a_token_holding_only_tenants_admin_cannot_invite_an_owner(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let token = app.service_token(Some(&tenant), &[Permission::TenantsAdmin]).await;

    let invited = app.invite(&tenant, &token, "new@example.com", "owner").await;

    assert_eq!(invited.status, StatusCode::FORBIDDEN);
    assert_eq!(
        invited.body["detail"],
        "the `owner` role carries the `keys:verify` permission, which this credential does not hold"
    );
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM invites")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(pending, 0);
}

#[sqlx::test]
async fn a_caller_may_invite_with_a_role_whose_permissions_it_holds(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let token = app
        .service_token(
            Some(&tenant),
            &[Permission::TenantsAdmin, Permission::KeysRead, Permission::KeysWrite],
        )
        .await;

    assert_eq!(
        app.invite(&tenant, &token, "dev@example.com", "developer").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.invite(&tenant, &token, "aud@example.com", "auditor").await.status,
        StatusCode::FORBIDDEN
    );
}

#[sqlx::test]
async fn a_role_change_cannot_grant_more_than_the_caller_holds(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (dev, _) = app.member(&tenant, "dev@example.com", "developer").await;
    let token = app
        .service_token(
            Some(&tenant),
            &[Permission::TenantsAdmin, Permission::KeysRead, Permission::KeysWrite],
        )
        .await;
    let path = format!("/v1/tenants/{tenant}/members/{dev}");

    let to_owner = app.patch(&path, &token, json!({"role": "owner"})).await;
    let to_admin = app.patch(&path, &token, json!({"role": "admin"})).await;

    assert_eq!(to_owner.status, StatusCode::FORBIDDEN);
    assert_eq!(to_admin.status, StatusCode::FORBIDDEN);
    let member = app.get(&path, &app.admin).await;
    assert_eq!(member.body["role"], "developer");
}

#[sqlx::test]
async fn service_tokens_list_who_created_them(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (owner_id, owner) = app.member(&tenant, "owner@example.com", "owner").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/service-tokens"),
            &owner,
            json!({"name": "ci", "permissions": ["keys:read"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);

    let listed = app
        .get(&format!("/v1/tenants/{tenant}/service-tokens"), &app.admin)
        .await;

    assert_eq!(listed.body["items"][0]["created_by"], owner_id.as_str());
}

async fn token_made_by_a_second_owner(app: &TestApp, tenant: &str) -> (String, String) {
    app.member(tenant, "first@example.com", "owner").await;
    let (second, second_token) = app.member(tenant, "second@example.com", "owner").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/service-tokens"),
            &second_token,
            json!({"name": "ci", "permissions": ["keys:read"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    (second, created.body["token"].as_str().unwrap().to_owned())
}

#[sqlx::test]
async fn tokens_a_removed_member_created_keep_working_by_default(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (second, token) = token_made_by_a_second_owner(&app, &tenant).await;

    let removed = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/members/{second}"),
            Some(&app.admin),
            None,
        )
        .await;

    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/tenants/{tenant}/keys"), &token).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn removing_a_member_with_revoke_tokens_revokes_what_they_created(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (second, token) = token_made_by_a_second_owner(&app, &tenant).await;
    let kept = app.service_token(Some(&tenant), &[Permission::KeysRead]).await;
    assert_eq!(
        app.get(&format!("/v1/tenants/{tenant}/keys"), &token).await.status,
        StatusCode::OK
    );

    let removed = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/members/{second}"),
            Some(&app.admin),
            Some(json!({"revoke_tokens": true})),
        )
        .await;

    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/tenants/{tenant}/keys"), &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get(&format!("/v1/tenants/{tenant}/keys"), &kept).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn invitations_a_removed_member_sent_are_voided(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.member(&tenant, "first@example.com", "owner").await;
    let (second, second_token) = app.member(&tenant, "second@example.com", "owner").await;
    let backdoor = token_of(&app.invite(&tenant, &second_token, "alt@evil.example", "owner").await);

    let removed = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/members/{second}"),
            Some(&app.admin),
            None,
        )
        .await;

    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.accept_invite(&backdoor, Some(PASSWORD), None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test]
async fn accepting_with_neither_password_nor_login_answers_alike_for_new_and_existing_accounts(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.user("existing@example.com", false).await;
    let existing = token_of(
        &app.invite(&tenant, &app.admin, "existing@example.com", "developer")
            .await,
    );
    let new = token_of(&app.invite(&tenant, &app.admin, "new@example.com", "developer").await);

    let to_existing = app.accept_invite(&existing, None, None).await;
    let to_new = app.accept_invite(&new, None, None).await;

    assert_eq!(to_existing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(to_existing.body, to_new.body);
}

#[sqlx::test]
async fn a_failed_accept_racing_a_cancellation_does_not_revive_the_invitation(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let invited = app.invite(&tenant, &app.admin, "new@example.com", "owner").await;
    let invite = token_of(&invited);
    let id = uuid::Uuid::parse_str(invited.body["id"].as_str().unwrap()).unwrap();
    app.call(
        Method::DELETE,
        &format!("/v1/tenants/{tenant}/invitations/{id}"),
        Some(&app.admin),
        None,
    )
    .await;

    // What a failed accept that read the invitation before the cancellation then records.
    let mut conn = app.pool.acquire().await.unwrap();
    keyward::repo::invites::record_failed_accept(&mut conn, id, 5, app.clock().now())
        .await
        .unwrap();

    assert_eq!(
        app.accept_invite(&invite, Some(PASSWORD), None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test]
async fn a_caller_cannot_demote_or_remove_a_member_holding_more_than_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.member(&tenant, "first@example.com", "owner").await;
    let (second, _) = app.member(&tenant, "second@example.com", "owner").await;
    let token = app
        .service_token(
            Some(&tenant),
            &[Permission::TenantsAdmin, Permission::KeysRead, Permission::KeysWrite],
        )
        .await;
    let path = format!("/v1/tenants/{tenant}/members/{second}");

    let demoted = app.patch(&path, &token, json!({"role": "developer"})).await;
    let removed = app.call(Method::DELETE, &path, Some(&token), None).await;

    assert_eq!(demoted.status, StatusCode::FORBIDDEN);
    assert_eq!(removed.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&path, &app.admin).await.body["role"], "owner");
}
