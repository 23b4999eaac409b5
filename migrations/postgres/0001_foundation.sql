-- Anchorpoint foundation schema (PostgreSQL). Times are Unix milliseconds (UTC).
-- Every table carries the tenant; '*' marks platform-wide rows.

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY NOT NULL,
    organization  TEXT NOT NULL,
    -- Host name stations of this tenant use (SNI); the tenant then has its own
    -- CSMS root and server certificate. NULL: the platform's.
    ocpp_hostname TEXT UNIQUE,
    created_at    BIGINT NOT NULL
);

-- CA certificates and sealed private keys (AES-256-GCM under the master key).
CREATE TABLE credentials (
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    cert_pem    TEXT NOT NULL,
    sealed_key  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Station ids are unique platform-wide: the OCPP URL carries no tenant.
CREATE TABLE stations (
    id                 TEXT PRIMARY KEY NOT NULL,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    security_profile   BIGINT NOT NULL,
    password_hash      TEXT,
    registration       TEXT NOT NULL,
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    description        TEXT,
    boot_status        TEXT,
    vendor             TEXT,
    model              TEXT,
    serial_number      TEXT,
    firmware_version   TEXT,
    last_boot_at       BIGINT,
    last_heartbeat_at  BIGINT,
    last_seen_at       BIGINT,
    created_at         BIGINT NOT NULL
);
CREATE INDEX stations_tenant ON stations (tenant_id, id);

CREATE TABLE boot_notifications (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    station_id   TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL,
    payload      TEXT NOT NULL
);
CREATE INDEX boot_notifications_station ON boot_notifications (tenant_id, station_id, id);

CREATE TABLE connector_statuses (
    tenant_id     TEXT NOT NULL,
    station_id    TEXT NOT NULL,
    evse_id       BIGINT NOT NULL,
    connector_id  BIGINT NOT NULL,
    status        TEXT NOT NULL,
    reported_at   BIGINT NOT NULL,
    received_at   BIGINT NOT NULL,
    PRIMARY KEY (station_id, evse_id, connector_id),
    CHECK (evse_id >= 0 AND connector_id >= 0)
);
CREATE INDEX connector_statuses_tenant ON connector_statuses (tenant_id, station_id);

-- NotifyEvent, NotifyReport and other reports, kept verbatim (validated JSON).
CREATE TABLE station_messages (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    station_id   TEXT NOT NULL,
    action       TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    payload      TEXT NOT NULL
);
CREATE INDEX station_messages_station ON station_messages (tenant_id, station_id, id);

CREATE TABLE security_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    station_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    tech_info    TEXT,
    received_at  BIGINT NOT NULL
);
CREATE INDEX security_events_station ON security_events (tenant_id, station_id, id);

-- Certificates issued to stations; revocation is checked at every connect.
CREATE TABLE certificates (
    tenant_id     TEXT NOT NULL,
    serial_hex    TEXT NOT NULL,
    station_id    TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    not_before    BIGINT NOT NULL,
    not_after     BIGINT NOT NULL,
    cert_pem      TEXT NOT NULL,
    issued_at     BIGINT NOT NULL,
    revoked_at    BIGINT,
    PRIMARY KEY (tenant_id, serial_hex)
);
CREATE INDEX certificates_station ON certificates (tenant_id, station_id);
