//! Who is signed in to the personal account, and what their role lets them do.
//!
//! The session layer puts an [`AccountUser`] into each signed-in request's extensions;
//! pages take it from there and ask [`Role::can`] before they show or do anything that
//! not every role may.

/// A user's role within their merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including managing users and reading the account's record.
    Owner,
    /// API settings: the secret, origins, the IP allow-list, webhook endpoints.
    Developer,
    /// Payment history, exports, and moving money: captures, voids, refunds.
    Accountant,
    /// Reads payments; changes nothing.
    Viewer,
}

/// What a page or form does that not every role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See payments, their pages and the history's totals and chart.
    ViewPayments,
    /// Download the history as CSV.
    ExportPayments,
    /// Capture, void or refund a payment from its page.
    MovePayments,
    /// Change API settings: secret, origins, IP allow-list, webhook endpoints.
    ManageApiSettings,
    /// Create users, change their roles, remove them.
    ManageUsers,
    /// Read the account's record of sign-ins and changes.
    ViewAccountRecord,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Developer, Role::Accountant, Role::Viewer];

    /// Does this role allow `permission`?
    pub fn can(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Developer => matches!(permission, ViewPayments | ManageApiSettings),
            Role::Accountant => matches!(permission, ViewPayments | ExportPayments | MovePayments),
            Role::Viewer => matches!(permission, ViewPayments),
        }
    }

    /// The role's name as stored and as the CLI takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Developer => "developer",
            Role::Accountant => "accountant",
            Role::Viewer => "viewer",
        }
    }

    /// The role named `name` (as [`Role::as_str`] writes it), if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct AccountUser {
    pub user_id: String,
    /// The merchant the user belongs to: every page shows and changes this merchant's
    /// data only.
    pub merchant_id: String,
    pub email: String,
    pub role: Role,
    /// The session's CSRF token: every state-changing form carries it as the field
    /// `csrf`, and the session layer refuses a form without the right one.
    pub csrf_token: String,
}

impl AccountUser {
    /// Does the user's role allow `permission`?
    pub fn can(&self, permission: Permission) -> bool {
        self.role.can(permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
        assert_eq!(Role::parse("Owner"), None);
    }

    #[test]
    fn only_owners_manage_users_and_read_the_record() {
        for role in Role::ALL {
            let owner = role == Role::Owner;
            assert_eq!(role.can(Permission::ManageUsers), owner, "{role:?}");
            assert_eq!(role.can(Permission::ViewAccountRecord), owner, "{role:?}");
        }
    }

    #[test]
    fn viewers_read_and_change_nothing() {
        assert!(Role::Viewer.can(Permission::ViewPayments));
        for permission in [
            Permission::ExportPayments,
            Permission::MovePayments,
            Permission::ManageApiSettings,
            Permission::ManageUsers,
            Permission::ViewAccountRecord,
        ] {
            assert!(!Role::Viewer.can(permission), "{permission:?}");
        }
    }

    #[test]
    fn money_moves_for_accountants_and_settings_for_developers() {
        assert!(Role::Accountant.can(Permission::MovePayments));
        assert!(!Role::Accountant.can(Permission::ManageApiSettings));
        assert!(Role::Developer.can(Permission::ManageApiSettings));
        assert!(!Role::Developer.can(Permission::MovePayments));
        assert!(!Role::Developer.can(Permission::ExportPayments));
    }
}
