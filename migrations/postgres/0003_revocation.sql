-- Revocation reasons (RFC 5280 CRLReason names) for CRLs and OCSP.
ALTER TABLE certificates ADD COLUMN revocation_reason TEXT;
CREATE INDEX certificates_revoked ON certificates (tenant_id, revoked_at);
CREATE INDEX certificates_revoked_at ON certificates (revoked_at);
