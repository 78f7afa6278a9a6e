//! The permission matrix `policy check` prints: every principal × every operation.

use std::fmt;

use crate::operation::Operation;
use crate::policy::Scope;

/// Every principal of a policy (as written) × every operation → allowed? Its `Display`
/// is an aligned text table; operations needing a second officer are marked `*`, and a
/// role that creates only checkout-bound tokens shows `checkout` under `tokens.create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionMatrix {
    pub(crate) rows: Vec<MatrixRow>,
    pub(crate) dual_control: [bool; Operation::ALL.len()],
}

/// One principal's line of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixRow {
    /// The principal as written in the file, `prefix/*` patterns included.
    pub principal: String,
    /// The role it belongs to.
    pub role: String,
    /// The role's merchant scope, if it has one.
    pub scope: Option<Scope>,
    /// The role creates only checkout-bound tokens (`checkout_tokens_only = true`).
    pub checkout_tokens_only: bool,
    /// Indexed like [`Operation::ALL`].
    pub(crate) allowed: [bool; Operation::ALL.len()],
}

impl MatrixRow {
    /// Does this principal's role grant `op` (for some merchant)?
    pub fn allows(&self, op: Operation) -> bool {
        self.allowed[op.index()]
    }
}

impl PermissionMatrix {
    /// The rows, in file order.
    pub fn rows(&self) -> &[MatrixRow] {
        &self.rows
    }

    /// Whether the principal written exactly `principal` in the file may do `op`;
    /// `None` if the file has no such principal. This looks up the text as written —
    /// use [`Policy::decide`](crate::Policy::decide) for a certificate's identity.
    pub fn allows(&self, principal: &str, op: Operation) -> Option<bool> {
        self.rows.iter().find(|row| row.principal == principal).map(|row| row.allows(op))
    }
}

impl fmt::Display for PermissionMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut header: Vec<String> = vec!["principal".into(), "role".into(), "scope".into()];
        header.extend(Operation::ALL.iter().map(|op| {
            let mark = if self.dual_control[op.index()] { "*" } else { "" };
            format!("{op}{mark}")
        }));
        let mut table = vec![header];
        for row in &self.rows {
            let mut cells =
                vec![row.principal.clone(), row.role.clone(), row.scope.map_or("-", Scope::as_str).to_owned()];
            cells.extend(Operation::ALL.iter().map(|op| {
                match (row.allows(*op), *op == Operation::TokensCreate && row.checkout_tokens_only) {
                    (true, true) => "checkout",
                    (true, false) => "yes",
                    (false, _) => "-",
                }
                .to_owned()
            }));
            table.push(cells);
        }

        let columns = table.first().map_or(0, Vec::len);
        let widths: Vec<usize> = (0..columns)
            .map(|c| table.iter().filter_map(|cells| cells.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
            .collect();
        for cells in &table {
            let line: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            writeln!(f, "{}", line.join("  ").trim_end())?;
        }
        if self.dual_control.iter().any(|needs| *needs) {
            writeln!(f, "* needs approval by a second, different officer (keys.approve)")?;
        }
        Ok(())
    }
}
