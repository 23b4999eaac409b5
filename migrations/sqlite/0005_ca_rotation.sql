-- CA rotation and operators' own CAs.

-- The CA that issued a certificate (first 16 hex digits of the SHA-256 of the
-- CA certificate). NULL for certificates issued before the first rotation:
-- the tenant's only station CA then.
ALTER TABLE certificates ADD COLUMN issuer_id TEXT;
CREATE INDEX certificates_issuer ON certificates (tenant_id, issuer_id);

-- A CA replaced by a newer one keeps its row, renamed 'station-ca@<id>' or
-- 'station-root@<id>'. replaced_at: when it stopped issuing. trusted_until:
-- end of the overlap; the gateway refuses its certificates after that, while
-- its CRL and OCSP answers stay published.
ALTER TABLE credentials ADD COLUMN replaced_at INTEGER;
ALTER TABLE credentials ADD COLUMN trusted_until INTEGER;
