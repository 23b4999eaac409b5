//! What stations, tenants and hosts may be called, checked in one place for the
//! gateway, the service layer, the REST API and the command line.

/// OCPP 2.0.1: a charging station identity is at most 48 characters.
pub const MAX_STATION_ID_LEN: usize = 48;

/// What a station id is, for error messages.
pub const STATION_ID_RULE: &str = "1-48 characters of A-Z a-z 0-9 - . _ ~";

/// What a tenant name is, for error messages.
pub const TENANT_ID_RULE: &str = "1-63 characters of a-z, 0-9 and '-', not starting with '-'";

/// 1 to 48 characters from RFC 3986's unreserved set; never ':' (Basic auth) or '/'.
pub fn valid_station_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STATION_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A tenant id: 1-63 of `[a-z0-9-]`, not starting with '-'.
pub fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && !id.starts_with('-')
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A DNS host name: labels of letters, digits and '-', at most 253 characters.
pub fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').count() >= 2
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_station_id("CS-01.a_b~"));
        assert!(!valid_station_id(""));
        assert!(!valid_station_id("a:b"));
        assert!(!valid_station_id("a/b"));
        assert!(valid_station_id(&"x".repeat(48)));
        assert!(!valid_station_id(&"x".repeat(49)));
        assert!(valid_tenant_id("acme-1"));
        assert!(!valid_tenant_id("-acme"));
        assert!(!valid_tenant_id("Acme"));
        assert!(valid_hostname("ocpp.example.com"));
        assert!(!valid_hostname("localhost"));
        assert!(!valid_hostname("-a.example.com"));
    }
}
