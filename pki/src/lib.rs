//! Certificate authority.
