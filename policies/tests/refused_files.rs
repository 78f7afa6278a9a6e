//! Bad policy files: each is refused with a message naming the problem and its line.

// A test crate: a failed unwrap or panic is a failed test (as clippy.toml allows inside
// #[test] functions; this extends it to the helpers here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_policies::{Policy, PolicyError, Problem};

/// A valid policy; the bad ones below are small edits of it.
const GOOD: &str = r#"[dual_control]
operations = ["keys.rotate"]

[roles.officer]
principals = ["spiffe://paysys/officer/*"]
operations = ["keys.status", "keys.rotate", "keys.approve"]

[roles.gateway]
principals = ["spiffe://paysys/gateway"]
operations = ["tokens.read", "relay"]
scope = "any"
destinations = ["acquirer"]

[destinations.acquirer]
url = "https://localhost:9443"
path_prefix = "/acquirer/"
fields = ["number", "cvc"]

[destinations.acquirer.templates.authorize]
method = "POST"
path = "/acquirer/authorize"
body = '{"amount": "{{amount}}", "pan": "{{card.number}}", "cvc": "{{card.cvc}}"}'
values.amount = { type = "integer", min = 1, max = 100 }
"#;

/// Replace the one occurrence of `from` in [`GOOD`]; fails the test if it is not there.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(GOOD.matches(from).count(), 1, "{from:?} must occur exactly once");
    GOOD.replace(from, to)
}

/// `text` is refused on `line` with a message containing `needle`.
#[track_caller]
fn assert_refused(text: &str, line: usize, needle: &str) -> PolicyError {
    let err = match Policy::from_toml(text) {
        Ok(policy) => panic!("accepted a bad policy: {policy:?}\n{text}"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(message.starts_with(&format!("line {line}: ")), "wrong line in {message:?}");
    assert!(message.contains(needle), "{message:?} does not mention {needle:?}");
    assert_eq!(err.line(), Some(line));
    assert!(!message.contains('\n'), "multi-line message {message:?}");
    err
}

#[test]
fn the_base_policy_is_valid() {
    assert!(Policy::from_toml(GOOD).is_ok());
}

#[test]
fn unknown_top_level_key() {
    let text = format!("{GOOD}\n[logging]\nlevel = \"debug\"\n");
    assert_refused(&text, 25, "unknown field `logging`");
    let text = edit("[dual_control]", "allow_all = true\n\n[dual_control]");
    assert_refused(&text, 1, "unknown field `allow_all`");
}

#[test]
fn unknown_key_in_a_rule() {
    let text = edit("scope = \"any\"", "scope = \"any\"\nadmin = true");
    assert_refused(&text, 12, "unknown field `admin`");
    let text = edit("fields = [\"number\", \"cvc\"]", "fields = [\"number\", \"cvc\"]\nmethod = \"POST\"");
    assert_refused(&text, 18, "unknown field `method`");
    let text = edit("operations = [\"keys.rotate\"]", "operations = [\"keys.rotate\"]\nquorum = 2");
    assert_refused(&text, 3, "unknown field `quorum`");
}

#[test]
fn duplicate_principal() {
    // Across roles: the wildcard officer pattern again in the gateway role.
    let text = edit(
        "principals = [\"spiffe://paysys/gateway\"]",
        "principals = [\"spiffe://paysys/gateway\",\n  \"spiffe://paysys/officer/*\"]",
    );
    let err = assert_refused(&text, 10, "duplicate principal `spiffe://paysys/officer/*`");
    assert!(err.to_string().contains("role `officer` on line 5"), "{err}");
    // Within one role.
    let text = edit(
        "principals = [\"spiffe://paysys/gateway\"]",
        "principals = [\"spiffe://paysys/gateway\", \"spiffe://paysys/gateway\"]",
    );
    assert_refused(&text, 9, "duplicate principal `spiffe://paysys/gateway`");
    // A duplicate role name is TOML's duplicate key.
    let text = format!("{GOOD}\n[roles.officer]\nprincipals = [\"x\"]\noperations = [\"keys.status\"]\n");
    assert_refused(&text, 25, "duplicate key `officer`");
}

#[test]
fn unknown_operation() {
    let text = edit("[\"tokens.read\", \"relay\"]", "[\"tokens.crate\", \"tokens.read\", \"relay\"]");
    let err = assert_refused(&text, 10, "unknown operation `tokens.crate`");
    assert_eq!(err.to_string(), "line 10: unknown operation `tokens.crate`");
    assert!(
        matches!(err, PolicyError::Invalid { problem: Problem::UnknownOperation(ref op), .. } if op == "tokens.crate")
    );
    // Wildcards and other spellings are not operations either.
    let text = edit("\"keys.status\", \"keys.rotate\"", "\"keys.*\", \"keys.rotate\"");
    assert_refused(&text, 6, "unknown operation `keys.*`");
    let text = edit("operations = [\"keys.rotate\"]", "operations = [\"keys.rotat\"]");
    assert_refused(&text, 2, "unknown operation `keys.rotat`");
}

#[test]
fn empty_operations_list() {
    let text = edit("operations = [\"tokens.read\", \"relay\"]", "operations = []");
    assert_refused(&text, 10, "`operations` must not be empty");
}

#[test]
fn empty_principals_list() {
    let text = edit("principals = [\"spiffe://paysys/gateway\"]", "principals = []");
    assert_refused(&text, 9, "`principals` must not be empty");
}

#[test]
fn empty_relay_field_list() {
    let text = edit("fields = [\"number\", \"cvc\"]", "fields = []");
    assert_refused(&text, 17, "`fields` must not be empty");
}

#[test]
fn empty_destination_list() {
    let text = edit("destinations = [\"acquirer\"]", "destinations = []");
    assert_refused(&text, 12, "`destinations` must not be empty");
}

#[test]
fn unknown_card_field() {
    let text = edit("fields = [\"number\", \"cvc\"]", "fields = [\"number\",\n  \"pan\"]");
    assert_refused(&text, 18, "unknown card field `pan`");
}

#[test]
fn destination_referenced_but_not_defined() {
    let text = edit("destinations = [\"acquirer\"]", "destinations = [\"acquirer\", \"issuer\"]");
    assert_refused(&text, 12, "unknown destination `issuer`");
}

#[test]
fn relay_without_destinations_and_destinations_without_relay() {
    let text = edit("destinations = [\"acquirer\"]\n", "");
    assert_refused(&text, 8, "grants `relay` but lists no `destinations`");
    let text = edit("operations = [\"tokens.read\", \"relay\"]", "operations = [\"tokens.read\"]");
    assert_refused(&text, 12, "lists `destinations` but does not grant `relay`");
}

#[test]
fn token_operations_need_a_scope() {
    let text = edit("scope = \"any\"\n", "");
    assert_refused(&text, 10, "needs `scope = \"own\"` or `scope = \"any\"`");
    let text = edit("scope = \"any\"", "scope = \"all\"");
    assert_refused(&text, 11, "unknown variant `all`");
}

#[test]
fn bad_principals() {
    for (bad, reason) in [
        ("*", "last path segment"),
        ("spiffe://paysys/merchant*", "last path segment"),
        ("spiffe://paysys/*/alice", "last path segment"),
        ("", "must not be empty"),
        ("spiffe://paysys/ gateway", "whitespace"),
    ] {
        let text = edit("\"spiffe://paysys/gateway\"", &format!("{bad:?}"));
        assert_refused(&text, 9, reason);
    }
}

#[test]
fn bad_destinations() {
    let text = edit("https://localhost:9443", "http://localhost:9443");
    assert_refused(&text, 15, "must start with `https://`");
    let text = edit("https://localhost:9443", "https://localhost:9443/acquirer");
    assert_refused(&text, 15, "no path");
    let text = edit("\"/acquirer/\"", "\"acquirer/\"");
    assert_refused(&text, 16, "invalid path_prefix");
    let text = edit("\"/acquirer/\"", "\"/acquirer/../admin/\"");
    assert_refused(&text, 16, "invalid path_prefix");
    // Without the trailing `/`, `/acquirer` would admit `/acquirer-admin/…`.
    let text = edit("\"/acquirer/\"", "\"/acquirer\"");
    assert_refused(&text, 16, "invalid path_prefix");
    let text = edit("\"/acquirer/\"", "\"/acquirer/..;/\"");
    assert_refused(&text, 16, "invalid path_prefix");
}

#[test]
fn bad_templates() {
    // Every destination names the requests it takes.
    let start = GOOD.find("\n[destinations.acquirer.templates").unwrap();
    assert_refused(&GOOD[..start], 14, "`templates` must not be empty");
    let cases: [(&str, &str, usize, &str); 12] = [
        ("method = \"POST\"", "method = \"PUT\"", 20, "method must be GET or POST"),
        ("path = \"/acquirer/authorize\"", "path = \"/issuer/authorize\"", 21, "under the destination's path_prefix"),
        ("path = \"/acquirer/authorize\"", "path = \"/acquirer/..;/x\"", 21, "plain segments"),
        ("path = \"/acquirer/authorize\"", "path = \"/acquirer/a?x=1\"", 21, "plain segments"),
        // The destination may not receive the holder.
        ("\"{{card.cvc}}\"", "\"{{card.holder}}\"", 22, "card field `holder`"),
        ("\"{{card.cvc}}\"", "\"cvc={{card.cvc}}\"", 22, "whole JSON string value"),
        ("\"{{card.cvc}}\"", "\"{{card.pan}}\"", 22, "unknown card placeholder"),
        ("\"{{amount}}\"", "\"{{total}}\"", 22, "`{{total}}` is not a declared value"),
        ("\"pan\": ", "\"{{card.number}}\": ", 22, "cannot be an object key"),
        ("type = \"integer\", min = 1, max = 100", "type = \"integer\", min = 1", 23, "takes `min` <= `max`"),
        ("type = \"integer\"", "type = \"float\"", 23, "unknown value type `float`"),
        ("values.amount", "values.number", 23, "not a card field"),
    ];
    for (from, to, line, needle) in cases {
        assert_refused(&edit(from, to), line, needle);
    }
    // A declared value the body never uses is a mistake.
    let text = format!("{GOOD}values.note = {{ type = \"text\", max_len = 10 }}\n");
    assert_refused(&text, 22, "`note` is declared but not used");
}

#[test]
fn dual_control_checks() {
    let text = edit("operations = [\"keys.rotate\"]", "operations = [\"keys.approve\"]");
    assert_refused(&text, 2, "`keys.approve` cannot itself need approval");
    let text = edit("\"keys.status\", \"keys.rotate\", \"keys.approve\"", "\"keys.status\", \"keys.rotate\"");
    assert_refused(&text, 2, "no role grants `keys.approve`");
}

#[test]
fn missing_keys() {
    let text = edit("operations = [\"tokens.read\", \"relay\"]\n", "");
    assert_refused(&text, 8, "missing field `operations`");
    let text = edit("path_prefix = \"/acquirer/\"\n", "");
    assert_refused(&text, 14, "missing field `path_prefix`");
}

#[test]
fn no_roles_at_all() {
    assert_refused("", 1, "`roles` must not be empty");
}

#[test]
fn invalid_toml_syntax() {
    let text = edit("scope = \"any\"", "scope = \"any");
    assert_refused(&text, 11, "invalid basic string");
    let text = edit("[roles.gateway]", "[roles.gateway");
    assert_refused(&text, 8, "invalid table header");
    let text = edit("operations = [\"tokens.read\", \"relay\"]", "operations = [\"tokens.read\" \"relay\"]");
    assert_refused(&text, 10, "invalid array");
}

#[test]
fn with_destination_url_checks_name_and_url() {
    let policy = Policy::from_toml(GOOD).unwrap_or_else(|e| panic!("{e}"));
    let err = policy.clone().with_destination_url("nowhere", "https://localhost:1").map(|_| ()).unwrap_err();
    assert_eq!(err.line(), None);
    assert!(err.to_string().contains("unknown destination `nowhere`"), "{err}");
    let err = policy.with_destination_url("acquirer", "http://localhost:1").map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("must start with `https://`"), "{err}");
}

#[test]
fn checkout_tokens_only_needs_tokens_create_and_scope_any() {
    // Accepted: create, scope any.
    let text = edit("scope = \"any\"", "scope = \"any\"\ncheckout_tokens_only = false");
    let policy = Policy::from_toml(&text).unwrap();
    assert!(!policy.checkout_tokens_only("spiffe://paysys/gateway"));
    let intake = format!(
        "{GOOD}\n[roles.intake]\nprincipals = [\"spiffe://paysys/intake\"]\noperations = [\"tokens.create\"]\n\
         scope = \"any\"\ncheckout_tokens_only = true\n"
    );
    let policy = Policy::from_toml(&intake).unwrap();
    assert!(policy.checkout_tokens_only("spiffe://paysys/intake"));
    assert!(!policy.checkout_tokens_only("spiffe://paysys/gateway"));

    // The gateway's role has no tokens.create: the mark is refused on its own line.
    let text = edit("scope = \"any\"", "scope = \"any\"\ncheckout_tokens_only = true");
    let err = assert_refused(&text, 12, "does not grant `tokens.create`");
    assert!(matches!(err, PolicyError::Invalid { problem: Problem::CheckoutOnlyWithoutCreate { .. }, .. }));

    // tokens.create with scope own.
    let text = edit(
        "[roles.gateway]",
        "[roles.shop]\nprincipals = [\"spiffe://paysys/merchant/*\"]\noperations = [\"tokens.create\"]\n\
         scope = \"own\"\ncheckout_tokens_only = true\n\n[roles.gateway]",
    );
    let err = assert_refused(&text, 12, "needs `scope = \"any\"`");
    assert!(matches!(err, PolicyError::Invalid { problem: Problem::CheckoutOnlyNeedsScopeAny { .. }, .. }));

    // Not a boolean.
    let text = edit("scope = \"any\"", "scope = \"any\"\ncheckout_tokens_only = \"yes\"");
    assert_refused(&text, 12, "invalid type");
}
