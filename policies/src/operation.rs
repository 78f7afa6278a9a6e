//! The closed vocabularies a policy is written in: operations and card fields.

use std::fmt;

/// Something a client asks the vault to do. The string forms are what policy files and
/// audit records use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `tokens.create`: store a card and get a token for it.
    TokensCreate,
    /// `tokens.read`: read a token's metadata (brand, BIN, last 4, expiry; never the PAN).
    TokensRead,
    /// `tokens.delete`: delete a token and its card data.
    TokensDelete,
    /// `tokens.remove_for_merchant`: delete a token and its card data on behalf of the
    /// merchant the request names, only if the token is that merchant's, and at a rate
    /// the vault limits per merchant. The gateway's way to carry out `card.remove`
    /// without the general `tokens.delete`.
    TokensRemoveForMerchant,
    /// `relay`: have the vault substitute card data into a request to a destination.
    Relay,
    /// `keys.status`: key versions, check values, re-encryption progress.
    KeysStatus,
    /// `keys.rotate`: make a new key version.
    KeysRotate,
    /// `keys.approve`: approve a pending key operation requested by another officer.
    KeysApprove,
    /// `keys.retire`: retire a key version nothing is encrypted under any more.
    KeysRetire,
    /// `keys.destroy`: destroy a retired key version (crypto-shredding).
    KeysDestroy,
    /// `audit.read`: read and verify the audit log.
    AuditRead,
    /// `sys.seal`: seal the vault, unseal it by API, read the seal status.
    SysSeal,
}

impl Operation {
    /// Every operation, in the order policy tables show them.
    pub const ALL: [Operation; 12] = [
        Operation::TokensCreate,
        Operation::TokensRead,
        Operation::TokensDelete,
        Operation::TokensRemoveForMerchant,
        Operation::Relay,
        Operation::KeysStatus,
        Operation::KeysRotate,
        Operation::KeysApprove,
        Operation::KeysRetire,
        Operation::KeysDestroy,
        Operation::AuditRead,
        Operation::SysSeal,
    ];

    /// The name used in policy files and audit records, e.g. `tokens.create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::TokensCreate => "tokens.create",
            Operation::TokensRead => "tokens.read",
            Operation::TokensDelete => "tokens.delete",
            Operation::TokensRemoveForMerchant => "tokens.remove_for_merchant",
            Operation::Relay => "relay",
            Operation::KeysStatus => "keys.status",
            Operation::KeysRotate => "keys.rotate",
            Operation::KeysApprove => "keys.approve",
            Operation::KeysRetire => "keys.retire",
            Operation::KeysDestroy => "keys.destroy",
            Operation::AuditRead => "audit.read",
            Operation::SysSeal => "sys.seal",
        }
    }

    /// The operation with this exact name; no case folding, no aliases.
    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// Does this operation act on some merchant's tokens? Those are the operations a
    /// rule's merchant `scope` applies to, and a rule granting one must state a scope.
    pub fn is_merchant_bound(self) -> bool {
        match self {
            Operation::TokensCreate
            | Operation::TokensRead
            | Operation::TokensDelete
            | Operation::TokensRemoveForMerchant
            | Operation::Relay => true,
            Operation::KeysStatus
            | Operation::KeysRotate
            | Operation::KeysApprove
            | Operation::KeysRetire
            | Operation::KeysDestroy
            | Operation::AuditRead
            | Operation::SysSeal => false,
        }
    }

    /// Index into [`Operation::ALL`]; keeps per-operation tables as plain arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Operation::TokensCreate => 0,
            Operation::TokensRead => 1,
            Operation::TokensDelete => 2,
            Operation::TokensRemoveForMerchant => 3,
            Operation::Relay => 4,
            Operation::KeysStatus => 5,
            Operation::KeysRotate => 6,
            Operation::KeysApprove => 7,
            Operation::KeysRetire => 8,
            Operation::KeysDestroy => 9,
            Operation::AuditRead => 10,
            Operation::SysSeal => 11,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A piece of card data a relay destination may receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CardField {
    /// `number`: the PAN.
    Number,
    /// `exp_month`: expiry month.
    ExpMonth,
    /// `exp_year`: expiry year.
    ExpYear,
    /// `cvc`: the card security code (kept only until the first authorization).
    Cvc,
    /// `holder`: the cardholder name.
    Holder,
}

impl CardField {
    /// Every card field.
    pub const ALL: [CardField; 5] =
        [CardField::Number, CardField::ExpMonth, CardField::ExpYear, CardField::Cvc, CardField::Holder];

    /// The name used in policy files and relay templates (`{{card.number}}`).
    pub fn as_str(self) -> &'static str {
        match self {
            CardField::Number => "number",
            CardField::ExpMonth => "exp_month",
            CardField::ExpYear => "exp_year",
            CardField::Cvc => "cvc",
            CardField::Holder => "holder",
        }
    }

    /// The field with this exact name.
    pub fn parse(s: &str) -> Option<CardField> {
        CardField::ALL.into_iter().find(|field| field.as_str() == s)
    }
}

impl fmt::Display for CardField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_round_trip_and_index_matches_all() {
        for (i, op) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            assert_eq!(op.index(), i);
        }
        assert_eq!(Operation::parse("tokens.crate"), None);
        assert_eq!(Operation::parse("Tokens.Create"), None);
        assert_eq!(Operation::parse("keys.*"), None);
    }

    #[test]
    fn card_field_names_round_trip() {
        for field in CardField::ALL {
            assert_eq!(CardField::parse(field.as_str()), Some(field));
        }
        assert_eq!(CardField::parse("pan"), None);
    }
}
