-- A02/A03: every request for a station certificate, tracked from trigger to installation.
CREATE TABLE certificate_requests (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    station_id  TEXT NOT NULL,
    -- operator (A02, through the API) or station (A03, unsolicited SignCertificate)
    origin      TEXT NOT NULL,
    -- requested, triggered, csr_received, rejected, issued, delivered, station_rejected, installed, failed
    state       TEXT NOT NULL,
    csr_pem     TEXT,
    serial_hex  TEXT,
    detail      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX certificate_requests_station ON certificate_requests (tenant_id, station_id, id);

-- When a station first connected with a newer certificate: the older one is
-- revoked (superseded) after the configured grace period.
ALTER TABLE certificates ADD COLUMN superseded_at BIGINT;
