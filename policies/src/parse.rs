//! From TOML text to a validated [`Policy`]: serde reads the shape (and refuses unknown
//! keys), then each value is checked with its span so errors can name the line.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{PolicyError, Problem};
use crate::operation::{CardField, Operation};
use crate::policy::{Destination, Policy, PrincipalPattern, Role, Scope};
use crate::template::{self, RelayTemplate, TemplateMethod, ValueKind, ValueSpec};

type SpannedList = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    dual_control: Option<RawDualControl>,
    #[serde(default)]
    roles: BTreeMap<Spanned<String>, RawRole>,
    #[serde(default)]
    destinations: BTreeMap<Spanned<String>, RawDestination>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDualControl {
    operations: SpannedList,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    principals: SpannedList,
    operations: SpannedList,
    scope: Option<Spanned<Scope>>,
    destinations: Option<SpannedList>,
    checkout_tokens_only: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    url: Spanned<String>,
    path_prefix: Spanned<String>,
    fields: SpannedList,
    #[serde(default)]
    templates: BTreeMap<Spanned<String>, RawTemplate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    method: Spanned<String>,
    path: Spanned<String>,
    /// JSON text with placeholders; absent for `GET`.
    body: Option<Spanned<String>>,
    #[serde(default)]
    values: BTreeMap<Spanned<String>, Spanned<RawValueSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValueSpec {
    #[serde(rename = "type")]
    kind: String,
    min: Option<i64>,
    max: Option<i64>,
    min_len: Option<usize>,
    max_len: Option<usize>,
    values: Option<Vec<String>>,
    #[serde(default)]
    optional: bool,
}

/// Turns byte offsets into 1-based line numbers for one text.
struct Lines<'a> {
    text: &'a str,
}

impl Lines<'_> {
    fn of(&self, byte: usize) -> usize {
        self.text.bytes().take(byte).filter(|b| *b == b'\n').count() + 1
    }

    fn invalid<T>(&self, spanned: &Spanned<T>, problem: Problem) -> PolicyError {
        PolicyError::Invalid { line: self.of(spanned.span().start), problem }
    }
}

pub(crate) fn policy_from_toml(text: &str) -> Result<Policy, PolicyError> {
    let lines = Lines { text };
    let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Syntax {
        line: e.span().map(|span| lines.of(span.start)),
        // toml puts a hint on a second line; keep the error one line for logs.
        message: e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; "),
    })?;

    let destinations = check_destinations(&lines, raw.destinations)?;

    // Roles in file order, so `principals()` and the matrix read like the file.
    let mut raw_roles: Vec<(Spanned<String>, RawRole)> = raw.roles.into_iter().collect();
    raw_roles.sort_by_key(|(name, _)| name.span().start);
    if raw_roles.is_empty() {
        return Err(PolicyError::Invalid { line: 1, problem: Problem::EmptyList { key: "roles" } });
    }

    let mut roles = Vec::with_capacity(raw_roles.len());
    let mut principals = Vec::new();
    let mut seen: HashMap<String, (String, usize)> = HashMap::new();
    for (index, (name, raw_role)) in raw_roles.into_iter().enumerate() {
        let role_name = name.get_ref().clone();
        for principal in non_empty(&lines, &raw_role.principals, "principals")? {
            let pattern = check_principal(principal.get_ref()).map_err(|reason| {
                lines.invalid(principal, Problem::InvalidPrincipal { principal: principal.get_ref().clone(), reason })
            })?;
            let line = lines.of(principal.span().start);
            if let Some((first_role, first_line)) = seen.get(principal.get_ref()) {
                return Err(PolicyError::Invalid {
                    line,
                    problem: Problem::DuplicatePrincipal {
                        principal: principal.get_ref().clone(),
                        first_role: first_role.clone(),
                        first_line: *first_line,
                    },
                });
            }
            seen.insert(principal.get_ref().clone(), (role_name.clone(), line));
            principals.push((pattern, index));
        }
        roles.push(check_role(&lines, &name, raw_role, &destinations)?);
    }

    let mut dual_control = [false; Operation::ALL.len()];
    if let Some(raw_dual) = raw.dual_control {
        for entry in raw_dual.operations.get_ref() {
            let op = parse_operation(&lines, entry)?;
            if op == Operation::KeysApprove {
                return Err(lines.invalid(entry, Problem::ApprovalOfApproval));
            }
            dual_control[op.index()] = true;
        }
        let first_dual = Operation::ALL.into_iter().find(|op| dual_control[op.index()]);
        let anyone_approves = roles.iter().any(|role| role.operations[Operation::KeysApprove.index()]);
        if let (Some(op), false) = (first_dual, anyone_approves) {
            return Err(lines.invalid(&raw_dual.operations, Problem::NoApprover { operation: op.as_str() }));
        }
    }

    Ok(Policy { roles, principals, destinations, dual_control })
}

fn check_role(
    lines: &Lines<'_>,
    name: &Spanned<String>,
    raw: RawRole,
    destinations: &BTreeMap<String, Destination>,
) -> Result<Role, PolicyError> {
    let role_name = name.get_ref().clone();
    let mut operations = [false; Operation::ALL.len()];
    for entry in non_empty(lines, &raw.operations, "operations")? {
        operations[parse_operation(lines, entry)?.index()] = true;
    }
    let granted = |op: Operation| operations[op.index()];

    let scope = raw.scope.map(|s| *s.get_ref());
    if scope.is_none() {
        if let Some(op) = Operation::ALL.into_iter().find(|op| op.is_merchant_bound() && granted(*op)) {
            return Err(
                lines.invalid(&raw.operations, Problem::MissingScope { role: role_name, operation: op.as_str() })
            );
        }
    }

    let checkout_tokens_only = match &raw.checkout_tokens_only {
        Some(flag) if *flag.get_ref() => {
            if !granted(Operation::TokensCreate) {
                return Err(lines.invalid(flag, Problem::CheckoutOnlyWithoutCreate { role: role_name }));
            }
            if scope != Some(Scope::Any) {
                return Err(lines.invalid(flag, Problem::CheckoutOnlyNeedsScopeAny { role: role_name }));
            }
            true
        }
        _ => false,
    };

    let mut names = Vec::new();
    match (&raw.destinations, granted(Operation::Relay)) {
        (None, false) => {}
        (None, true) => {
            return Err(lines.invalid(name, Problem::RelayWithoutDestinations { role: role_name }));
        }
        (Some(list), false) => {
            return Err(lines.invalid(list, Problem::DestinationsWithoutRelay { role: role_name }));
        }
        (Some(list), true) => {
            for entry in non_empty(lines, list, "destinations")? {
                if !destinations.contains_key(entry.get_ref()) {
                    return Err(lines.invalid(entry, Problem::UnknownDestination(entry.get_ref().clone())));
                }
                if !names.contains(entry.get_ref()) {
                    names.push(entry.get_ref().clone());
                }
            }
        }
    }

    Ok(Role { name: role_name, operations, scope, destinations: names, checkout_tokens_only })
}

fn check_destinations(
    lines: &Lines<'_>,
    raw: BTreeMap<Spanned<String>, RawDestination>,
) -> Result<BTreeMap<String, Destination>, PolicyError> {
    let mut destinations = BTreeMap::new();
    for (name, raw) in raw {
        let url = check_url(raw.url.get_ref()).map_err(|problem| lines.invalid(&raw.url, problem))?;
        let prefix = raw.path_prefix.get_ref();
        // Plain segments, ending in `/`: `/acquirer` would also admit `/acquirer-admin/…`.
        let prefix_ok = prefix
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix('/'))
            .is_some_and(|inner| inner.is_empty() || inner.split('/').all(template::segment_plain));
        if !prefix_ok {
            return Err(lines.invalid(&raw.path_prefix, Problem::InvalidPathPrefix(prefix.clone())));
        }
        let mut fields = Vec::new();
        for entry in non_empty(lines, &raw.fields, "fields")? {
            let field = CardField::parse(entry.get_ref())
                .ok_or_else(|| lines.invalid(entry, Problem::UnknownCardField(entry.get_ref().clone())))?;
            if !fields.contains(&field) {
                fields.push(field);
            }
        }
        if raw.templates.is_empty() {
            return Err(lines.invalid(&name, Problem::EmptyList { key: "templates" }));
        }
        let mut templates = BTreeMap::new();
        for (operation, raw_template) in raw.templates {
            let template = check_template(lines, name.get_ref(), &operation, raw_template, prefix, &fields)?;
            templates.insert(operation.into_inner(), template);
        }
        let name = name.into_inner();
        let path_prefix = raw.path_prefix.into_inner();
        destinations.insert(name.clone(), Destination { name, url, path_prefix, fields, templates });
    }
    Ok(destinations)
}

fn check_template(
    lines: &Lines<'_>,
    destination: &str,
    operation: &Spanned<String>,
    raw: RawTemplate,
    prefix: &str,
    fields: &[CardField],
) -> Result<RelayTemplate, PolicyError> {
    let name = format!("{destination}.{}", operation.get_ref());
    let invalid = |line_of: std::ops::Range<usize>, reason: String| PolicyError::Invalid {
        line: lines.of(line_of.start),
        problem: Problem::InvalidTemplate { template: name.clone(), reason },
    };
    if !template::value_name_valid(operation.get_ref()) {
        return Err(invalid(operation.span(), "a template name is `[a-z][a-z0-9_]*`".into()));
    }
    let method = match raw.method.get_ref().as_str() {
        "GET" => TemplateMethod::Get,
        "POST" => TemplateMethod::Post,
        _ => return Err(invalid(raw.method.span(), "method must be GET or POST".into())),
    };
    if !template::path_plain_under(raw.path.get_ref(), prefix) {
        let reason = "path must lie under the destination's path_prefix, in plain segments of [A-Za-z0-9._~-]";
        return Err(invalid(raw.path.span(), reason.into()));
    }
    let mut values = BTreeMap::new();
    for (value_name, spec) in raw.values {
        if !template::value_name_valid(value_name.get_ref()) || CardField::parse(value_name.get_ref()).is_some() {
            let reason =
                format!("value name `{}` must be `[a-z][a-z0-9_]*` and not a card field", value_name.get_ref());
            return Err(invalid(value_name.span(), reason));
        }
        let span = spec.span();
        let kind = value_kind(spec.into_inner()).map_err(|reason| invalid(span.clone(), reason))?;
        values.insert(value_name.into_inner(), kind);
    }
    let (body, card_fields) = match (method, raw.body) {
        (TemplateMethod::Get, None) => {
            if let Some(name) = values.keys().next() {
                return Err(invalid(operation.span(), format!("value `{name}` is declared but a GET has no body")));
            }
            (None, Default::default())
        }
        (TemplateMethod::Get, Some(body)) => return Err(invalid(body.span(), "a GET template has no body".into())),
        (TemplateMethod::Post, None) => return Err(invalid(operation.span(), "a POST template needs a body".into())),
        (TemplateMethod::Post, Some(body)) => {
            let json: serde_json::Value = serde_json::from_str(body.get_ref())
                .map_err(|e| invalid(body.span(), format!("body is not JSON: {e}")))?;
            let card_fields =
                template::check_body(&json, &values, fields).map_err(|reason| invalid(body.span(), reason))?;
            (Some(json), card_fields)
        }
    };
    Ok(RelayTemplate {
        name,
        destination: destination.to_owned(),
        method,
        path: raw.path.into_inner(),
        body,
        values,
        card_fields,
    })
}

/// A value's declared type, with the bounds its kind needs and no others.
fn value_kind(raw: RawValueSpec) -> Result<ValueSpec, String> {
    let RawValueSpec { kind, min, max, min_len, max_len, values, optional } = raw;
    let no_range = min.is_none() && max.is_none();
    let no_len = min_len.is_none() && max_len.is_none();
    let len_only = |kind: &str| -> Result<usize, String> {
        match (min_len, max_len) {
            (None, Some(max)) if (1..=4096).contains(&max) && no_range && values.is_none() => Ok(max),
            _ => Err(format!("a `{kind}` value takes `max_len` (1 to 4096) and nothing else")),
        }
    };
    let kind = match kind.as_str() {
        "integer" => match (min, max) {
            (Some(min), Some(max)) if min <= max && no_len && values.is_none() => ValueKind::Integer { min, max },
            _ => return Err("an `integer` value takes `min` <= `max` and nothing else".into()),
        },
        "digits" => match (min_len, max_len) {
            (Some(min_len), Some(max_len)) if 1 <= min_len && min_len <= max_len && max_len <= 32 && no_range => {
                ValueKind::Digits { min_len, max_len }
            }
            _ => return Err("a `digits` value takes `min_len` <= `max_len` (1 to 32) and nothing else".into()),
        },
        "text" => ValueKind::Text { max_len: len_only("text")? },
        "id" => ValueKind::Id { max_len: len_only("id")? },
        "url" => ValueKind::Url { max_len: len_only("url")? },
        "base64" => ValueKind::Base64 { max_len: len_only("base64")? },
        "enum" => match values {
            Some(values) if !values.is_empty() && no_range && no_len => ValueKind::Enum(values),
            _ => return Err("an `enum` value takes a non-empty `values` list and nothing else".into()),
        },
        simple @ ("bool" | "currency" | "ip") => {
            if !(no_range && no_len && values.is_none()) {
                return Err(format!("a `{simple}` value takes no bounds"));
            }
            match simple {
                "bool" => ValueKind::Bool,
                "currency" => ValueKind::Currency,
                _ => ValueKind::Ip,
            }
        }
        other => {
            return Err(format!(
                "unknown value type `{other}` (integer, digits, text, id, enum, bool, currency, url, ip, base64)"
            ))
        }
    };
    Ok(ValueSpec { kind, optional })
}

/// The list's entries, or an `EmptyList` error on the list's line.
fn non_empty<'a>(
    lines: &Lines<'_>,
    list: &'a SpannedList,
    key: &'static str,
) -> Result<&'a [Spanned<String>], PolicyError> {
    if list.get_ref().is_empty() {
        return Err(lines.invalid(list, Problem::EmptyList { key }));
    }
    Ok(list.get_ref())
}

fn parse_operation(lines: &Lines<'_>, entry: &Spanned<String>) -> Result<Operation, PolicyError> {
    Operation::parse(entry.get_ref())
        .ok_or_else(|| lines.invalid(entry, Problem::UnknownOperation(entry.get_ref().clone())))
}

/// An exact principal, or `prefix/*` matching one more path segment.
fn check_principal(principal: &str) -> Result<PrincipalPattern, &'static str> {
    if principal.is_empty() {
        return Err("must not be empty");
    }
    if principal.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    match principal.strip_suffix('*') {
        None if principal.contains('*') => Err("`*` is allowed only as the whole last path segment (`prefix/*`)"),
        None => Ok(PrincipalPattern::Exact(principal.to_owned())),
        Some(prefix) if prefix.contains('*') => Err("`*` may appear only once, as the last path segment"),
        Some(prefix) if !prefix.ends_with('/') => {
            Err("`*` is allowed only as the whole last path segment (`prefix/*`)")
        }
        Some("/") => Err("`/*` would match nearly any client; name a prefix"),
        Some(prefix) => Ok(PrincipalPattern::Wildcard(prefix.to_owned())),
    }
}

/// A relay base URL: `https://host[:port]`, nothing else. Card data never goes over
/// plain HTTP, and paths belong in `path_prefix` where they are checked.
pub(crate) fn check_url(url: &str) -> Result<String, Problem> {
    let invalid = |reason| Problem::InvalidUrl { url: url.to_owned(), reason };
    let authority = url.strip_prefix("https://").ok_or_else(|| invalid("must start with `https://`"))?;
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '?', '#']) {
        return Err(invalid("must have no path, query or fragment (put the path in `path_prefix`)"));
    }
    if authority.contains('@') {
        return Err(invalid("must not carry user info"));
    }
    if authority.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: [addr] or [addr]:port
        let (addr, after) = rest.split_once(']').ok_or_else(|| invalid("unclosed `[` in host"))?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(invalid("invalid IPv6 address"));
        }
        match after {
            "" => (addr, None),
            _ => (addr, Some(after.strip_prefix(':').ok_or_else(|| invalid("junk after `]`"))?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("has no host"));
    }
    if let Some(port) = port {
        let valid =
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return Err(invalid("port must be a number from 1 to 65535"));
        }
    }
    Ok(format!("https://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_patterns() {
        assert_eq!(
            check_principal("spiffe://paysys/gateway"),
            Ok(PrincipalPattern::Exact("spiffe://paysys/gateway".into()))
        );
        assert_eq!(
            check_principal("spiffe://paysys/merchant/*"),
            Ok(PrincipalPattern::Wildcard("spiffe://paysys/merchant/".into()))
        );
        for bad in [
            "",
            "*",
            "/*",
            "spiffe://paysys/merchant*",
            "spiffe://paysys/*/x",
            "spiffe://*/*",
            "a b",
            "spiffe://paysys/m_*",
        ] {
            assert!(check_principal(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls() {
        for good in [
            "https://localhost:9443",
            "https://127.0.0.1:9443",
            "https://acq.example",
            "https://[::1]:9443",
            "https://localhost:9443/",
        ] {
            assert!(check_url(good).is_ok(), "{good} refused");
        }
        assert_eq!(check_url("https://localhost:9443/").ok().as_deref(), Some("https://localhost:9443"));
        for bad in [
            "http://localhost:9443",
            "localhost:9443",
            "https://",
            "https://:9443",
            "https://localhost:0",
            "https://localhost:99999",
            "https://localhost:94x3",
            "https://localhost:9443/acquirer",
            "https://user@localhost",
            "https://localhost?x=1",
            "https://[::1",
        ] {
            assert!(check_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn line_numbers_count_from_one() {
        let lines = Lines { text: "a\nb\nc" };
        assert_eq!(lines.of(0), 1);
        assert_eq!(lines.of(2), 2);
        assert_eq!(lines.of(4), 3);
        assert_eq!(lines.of(999), 3);
    }
}
