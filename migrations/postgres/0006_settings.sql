-- Platform settings every process must agree on, written by `csms serve` at
-- start-up and read by the other issuers (the CLI). 'public_url': the base URL
-- of the CRL and OCSP URLs written into issued certificates.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
