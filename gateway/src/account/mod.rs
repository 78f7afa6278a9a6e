//! The partner's personal account: the web pages partners' staff sign in to for API
//! settings and payment history.
//!
//! * [`user`] — who is signed in and what their role lets them do.

pub mod user;
