//! A loaded policy and the decisions made from it.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{PolicyError, Problem};
use crate::matrix::{MatrixRow, PermissionMatrix};
use crate::operation::{CardField, Operation};
use crate::template::RelayTemplate;

/// A validated policy: who may do what. Built only by [`Policy::from_toml`], so every
/// `Policy` that exists passed validation. Everything not granted is denied.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Roles in file order.
    pub(crate) roles: Vec<Role>,
    /// Every principal pattern in file order, with the index of its role in `roles`.
    /// Patterns are unique (validation refuses duplicates).
    pub(crate) principals: Vec<(PrincipalPattern, usize)>,
    /// Relay destinations by name.
    pub(crate) destinations: BTreeMap<String, Destination>,
    /// Indexed by [`Operation::index`]: does the operation need a second officer?
    pub(crate) dual_control: [bool; Operation::ALL.len()],
}

/// A role: a set of principals sharing one rule.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub(crate) name: String,
    /// Indexed by [`Operation::index`].
    pub(crate) operations: [bool; Operation::ALL.len()],
    /// `Some` whenever the role grants a merchant-bound operation (validation ensures it).
    pub(crate) scope: Option<Scope>,
    /// Names of destinations in `Policy::destinations`; non-empty iff `relay` is granted.
    pub(crate) destinations: Vec<String>,
    /// `checkout_tokens_only = true`: every token this role creates must be bound to a
    /// checkout (a one-time grant the vault spends). Only with `tokens.create` and scope
    /// `any` (validation ensures it).
    pub(crate) checkout_tokens_only: bool,
}

impl Role {
    fn grants(&self, op: Operation) -> bool {
        self.operations[op.index()]
    }
}

/// A principal as written in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrincipalPattern {
    /// Matches exactly this string.
    Exact(String),
    /// Written `prefix/*`; holds `prefix/` and matches `prefix/<segment>` for one
    /// non-empty segment of URI-unreserved characters.
    Wildcard(String),
}

impl PrincipalPattern {
    /// The pattern as written in the file.
    pub(crate) fn as_written(&self) -> String {
        match self {
            PrincipalPattern::Exact(p) => p.clone(),
            PrincipalPattern::Wildcard(prefix) => format!("{prefix}*"),
        }
    }

    /// For a wildcard: the length of its prefix if it matches `principal`.
    fn wildcard_match_len(&self, principal: &str) -> Option<usize> {
        match self {
            PrincipalPattern::Exact(_) => None,
            PrincipalPattern::Wildcard(prefix) => {
                let segment = principal.strip_prefix(prefix.as_str())?;
                is_wildcard_segment(segment).then_some(prefix.len())
            }
        }
    }
}

/// What `*` may stand for: one path segment of URI-unreserved characters. Anything
/// else (`/`, `%`, `..`, empty) does not match, so odd certificates fall to deny.
fn is_wildcard_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// For which merchants a role may act with token operations and `relay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `own`: only the merchant named by the last path segment of the principal.
    Own,
    /// `any`: every merchant. Meant for PaySys's own services, never for a merchant.
    Any,
}

impl Scope {
    /// `own` or `any`, as written in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Own => "own",
            Scope::Any => "any",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An allow-listed place the vault may relay card data to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The name roles refer to it by.
    pub name: String,
    /// Base URL: always `https://host[:port]`, no path, no trailing slash.
    pub url: String,
    /// Every template's path lies under this; it starts and ends with `/`.
    pub path_prefix: String,
    /// The card fields this destination may receive; never empty, no duplicates.
    pub fields: Vec<CardField>,
    /// The requests the vault may send here, by operation name; never empty.
    pub templates: BTreeMap<String, RelayTemplate>,
}

impl Destination {
    /// May this destination receive `field`?
    pub fn permits_field(&self, field: CardField) -> bool {
        self.fields.contains(&field)
    }
}

/// Why a relay template cannot be used by a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateRefusal {
    /// The name is not `destination.operation`, or the destination has no such template.
    Unknown,
    /// The principal may not relay to the template's destination.
    DestinationNotAllowed,
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No role matches the principal, or its role does not grant the operation.
    NoRule,
    /// The role grants the operation, but not for this merchant (a merchant acting for
    /// another merchant).
    MerchantScope,
}

impl DenyReason {
    /// A stable name for audit records: `no_rule` or `merchant_scope`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyReason::NoRule => "no_rule",
            DenyReason::MerchantScope => "merchant_scope",
        }
    }
}

/// The answer to "may this principal do this?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse, for this reason.
    Deny(DenyReason),
}

impl Decision {
    /// Is this [`Decision::Allow`]?
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

impl Policy {
    /// Parse and validate a policy file. Refuses unknown keys, duplicate principals,
    /// unknown operations, card fields or destinations, and empty allow-lists; the
    /// error names the line.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        crate::parse::policy_from_toml(text)
    }

    /// The role matching `principal`: an exact principal if there is one, otherwise
    /// the longest matching `prefix/*`.
    fn role_for(&self, principal: &str) -> Option<&Role> {
        let exact =
            self.principals.iter().find(|(pattern, _)| matches!(pattern, PrincipalPattern::Exact(p) if p == principal));
        let chosen = exact.or_else(|| {
            self.principals
                .iter()
                .filter_map(|entry| entry.0.wildcard_match_len(principal).map(|len| (len, entry)))
                .max_by_key(|(len, _)| *len)
                .map(|(_, entry)| entry)
        });
        chosen.and_then(|(_, role)| self.roles.get(*role))
    }

    /// The name of the role `principal` falls under, if any (for logs and audit).
    pub fn role_of(&self, principal: &str) -> Option<&str> {
        self.role_for(principal).map(|role| role.name.as_str())
    }

    /// May `principal` do `op` for `merchant_id`?
    ///
    /// Pass `merchant_id: None` for operations not about a merchant (`keys.*`,
    /// `audit.read`, `sys.seal`), and the merchant of the request or token for
    /// `tokens.*` and `relay`. For those, a role with scope `own` is allowed only when
    /// `merchant_id` is the principal's last path segment — `None` included, it is
    /// denied, so a caller that forgets the merchant fails closed.
    pub fn decide(&self, principal: &str, op: Operation, merchant_id: Option<&str>) -> Decision {
        let Some(role) = self.role_for(principal) else {
            return Decision::Deny(DenyReason::NoRule);
        };
        if !role.grants(op) {
            return Decision::Deny(DenyReason::NoRule);
        }
        if !op.is_merchant_bound() {
            return Decision::Allow;
        }
        match role.scope {
            Some(Scope::Any) => Decision::Allow,
            Some(Scope::Own) => match (merchant_id, merchant_of(principal)) {
                (Some(asked), Some(own)) if asked == own => Decision::Allow,
                _ => Decision::Deny(DenyReason::MerchantScope),
            },
            // Validation refuses a merchant-bound grant without a scope; fail closed anyway.
            None => Decision::Deny(DenyReason::MerchantScope),
        }
    }

    /// Does the policy give `principal` the operation at all, for some merchant? Lets
    /// the vault answer "forbidden" before looking anything up, so a principal without
    /// the operation learns nothing about which tokens exist.
    pub fn allows_operation(&self, principal: &str, op: Operation) -> bool {
        self.role_for(principal).is_some_and(|role| role.grants(op))
    }

    /// May `principal` create only checkout-bound tokens? True for a role marked
    /// `checkout_tokens_only = true` (the card intake): the vault then refuses its
    /// `tokens.create` without a checkout binding, and refuses a binding from every
    /// other principal.
    pub fn checkout_tokens_only(&self, principal: &str) -> bool {
        self.role_for(principal).is_some_and(|role| role.checkout_tokens_only)
    }

    /// Must a second, different officer approve `op` before it takes effect?
    pub fn needs_approval(&self, op: Operation) -> bool {
        self.dual_control[op.index()]
    }

    /// May `approver` approve an operation requested by `requester`? Only if it holds
    /// `keys.approve` and is not the requester: one certificate cannot supply both halves
    /// of dual control.
    pub fn may_approve(&self, approver: &str, requester: &str) -> bool {
        approver != requester && self.allows_operation(approver, Operation::KeysApprove)
    }

    /// The destination named `name` if `principal` may relay to it. This checks the
    /// destination only; the merchant of the token is checked by
    /// [`decide`](Policy::decide) with [`Operation::Relay`].
    pub fn relay_destination(&self, principal: &str, name: &str) -> Option<&Destination> {
        let role = self.role_for(principal)?;
        if !role.grants(Operation::Relay) || !role.destinations.iter().any(|d| d == name) {
            return None;
        }
        self.destinations.get(name)
    }

    /// The template named `destination.operation` if `principal` may relay to its
    /// destination. An unknown destination or template is [`TemplateRefusal::Unknown`]
    /// only for a principal that may relay to that destination: others learn
    /// [`TemplateRefusal::DestinationNotAllowed`] and nothing about its templates.
    pub fn relay_template(&self, principal: &str, name: &str) -> Result<&RelayTemplate, TemplateRefusal> {
        let (destination, operation) = name.split_once('.').ok_or(TemplateRefusal::Unknown)?;
        let destination =
            self.relay_destination(principal, destination).ok_or(TemplateRefusal::DestinationNotAllowed)?;
        destination.templates.get(operation).ok_or(TemplateRefusal::Unknown)
    }

    /// Every relay destination the file defines, by name.
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.destinations.values()
    }

    /// The same policy with destination `name` sent to `url` instead. For launchers
    /// that start the sandbox on a port chosen at run time: the roles, paths and fields
    /// stay as reviewed in the file, only the address changes. `url` is checked like one
    /// in a file (`https://host[:port]`).
    pub fn with_destination_url(mut self, name: &str, url: &str) -> Result<Policy, PolicyError> {
        let url = crate::parse::check_url(url).map_err(|problem| PolicyError::Override { problem })?;
        let destination = self
            .destinations
            .get_mut(name)
            .ok_or_else(|| PolicyError::Override { problem: Problem::UnknownDestination(name.to_owned()) })?;
        destination.url = url;
        Ok(self)
    }

    /// Every principal × every operation → allowed?, for `policy check`. Principals
    /// appear as written in the file, in file order.
    pub fn permission_matrix(&self) -> PermissionMatrix {
        let rows = self
            .principals
            .iter()
            .filter_map(|(pattern, role)| {
                let role = self.roles.get(*role)?;
                Some(MatrixRow {
                    principal: pattern.as_written(),
                    role: role.name.clone(),
                    scope: role.scope,
                    checkout_tokens_only: role.checkout_tokens_only,
                    allowed: role.operations,
                })
            })
            .collect();
        PermissionMatrix { rows, dual_control: self.dual_control }
    }

    /// Every principal as written in the file (patterns included), in file order.
    pub fn principals(&self) -> Vec<String> {
        self.principals.iter().map(|(pattern, _)| pattern.as_written()).collect()
    }
}

/// The merchant a principal speaks for under scope `own`: its last path segment.
fn merchant_of(principal: &str) -> Option<&str> {
    principal.rsplit('/').next().filter(|segment| !segment.is_empty())
}
