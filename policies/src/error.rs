//! Why a policy was refused.

/// A policy file (or a change to a loaded policy) was refused. `Display` starts with the
/// line of the file the problem is on: `line 12: unknown operation `tokens.crate``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not TOML, or does not have the shape of a policy: a syntax error, an
    /// unknown key, a missing key, a value of the wrong type. `line` is `None` only if
    /// the TOML parser gave no position.
    #[error("{}{message}", line_prefix(*.line))]
    Syntax {
        /// 1-based line of the problem.
        line: Option<usize>,
        /// The parser's description, without its source excerpt.
        message: String,
    },
    /// Well-formed TOML that is not a valid policy.
    #[error("line {line}: {problem}")]
    Invalid {
        /// 1-based line of the offending value.
        line: usize,
        /// What is wrong.
        problem: Problem,
    },
    /// A change made to a loaded policy from code (see
    /// [`Policy::with_destination_url`](crate::Policy::with_destination_url)), so there
    /// is no line to name.
    #[error("{problem}")]
    Override {
        /// What is wrong.
        problem: Problem,
    },
}

impl PolicyError {
    /// The 1-based line the problem is on, if it comes from a file.
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Syntax { line, .. } => *line,
            PolicyError::Invalid { line, .. } => Some(*line),
            PolicyError::Override { .. } => None,
        }
    }
}

fn line_prefix(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

/// What makes well-formed TOML an invalid policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// An operation name that is not one of [`Operation::ALL`](crate::Operation::ALL).
    #[error("unknown operation `{0}`")]
    UnknownOperation(String),
    /// A card field name that is not one of [`CardField::ALL`](crate::CardField::ALL).
    #[error("unknown card field `{0}` (expected number, exp_month, exp_year, cvc or holder)")]
    UnknownCardField(String),
    /// The same principal appears twice, in one role or in two.
    #[error("duplicate principal `{principal}` (already in role `{first_role}` on line {first_line})")]
    DuplicatePrincipal {
        /// The principal as written.
        principal: String,
        /// The role it first appeared in.
        first_role: String,
        /// The line it first appeared on.
        first_line: usize,
    },
    /// A list that grants or allows something is empty; deny-by-default means an empty
    /// allow-list is almost certainly a mistake, so it is refused rather than guessed at.
    #[error("`{key}` must not be empty")]
    EmptyList {
        /// The key holding the empty list.
        key: &'static str,
    },
    /// A principal that is empty, contains whitespace or has a `*` anywhere but as a
    /// final path segment (`prefix/*`).
    #[error("invalid principal `{principal}`: {reason}")]
    InvalidPrincipal {
        /// The principal as written.
        principal: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A role names a relay destination that `[destinations]` does not define.
    #[error("unknown destination `{0}` (not defined under [destinations])")]
    UnknownDestination(String),
    /// A role grants `relay` without `destinations`.
    #[error("role `{role}` grants `relay` but lists no `destinations`")]
    RelayWithoutDestinations {
        /// The role.
        role: String,
    },
    /// A role lists `destinations` without granting `relay`.
    #[error("role `{role}` lists `destinations` but does not grant `relay`")]
    DestinationsWithoutRelay {
        /// The role.
        role: String,
    },
    /// A role grants a token operation or `relay` without saying for which merchants.
    #[error("role `{role}` grants `{operation}` and so needs `scope = \"own\"` or `scope = \"any\"`")]
    MissingScope {
        /// The role.
        role: String,
        /// The first merchant-bound operation it grants.
        operation: &'static str,
    },
    /// A role marked `checkout_tokens_only` that does not grant `tokens.create`: the
    /// mark restricts how the role creates tokens, so without the operation it means
    /// nothing and is almost certainly a mistake.
    #[error("role `{role}` sets `checkout_tokens_only` but does not grant `tokens.create`")]
    CheckoutOnlyWithoutCreate {
        /// The role.
        role: String,
    },
    /// A role marked `checkout_tokens_only` whose scope is not `any`: the card intake
    /// tokenizes for whichever merchant a checkout grant names.
    #[error("role `{role}` sets `checkout_tokens_only` and so needs `scope = \"any\"`")]
    CheckoutOnlyNeedsScopeAny {
        /// The role.
        role: String,
    },
    /// A destination URL that is not `https://host[:port]`.
    #[error("invalid destination url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as written.
        url: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A destination path prefix that is not `/`, plain segments, `/`.
    #[error("invalid path_prefix `{0}`: must start and end with `/`, with plain segments of [A-Za-z0-9._~-] between")]
    InvalidPathPrefix(String),
    /// A relay template that cannot be used as written.
    #[error("invalid relay template `{template}`: {reason}")]
    InvalidTemplate {
        /// `destination.operation`.
        template: String,
        /// Why it is refused.
        reason: String,
    },
    /// `keys.approve` listed under `[dual_control]`: an approval cannot itself wait for
    /// an approval.
    #[error("`keys.approve` cannot itself need approval")]
    ApprovalOfApproval,
    /// `[dual_control]` lists operations, but no role may approve them, so they could
    /// never run.
    #[error("dual control is required for `{operation}` but no role grants `keys.approve`")]
    NoApprover {
        /// The first operation under dual control.
        operation: &'static str,
    },
}
