-- REST API v1: station tags and the audit log (PostgreSQL).

-- Tags as shown (a JSON array); station_tags indexes them for filtering.
ALTER TABLE stations ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';

CREATE TABLE station_tags (
    tenant_id   TEXT NOT NULL,
    station_id  TEXT NOT NULL REFERENCES stations(id) ON DELETE CASCADE,
    tag         TEXT NOT NULL,
    PRIMARY KEY (station_id, tag)
);
CREATE INDEX station_tags_tag ON station_tags (tenant_id, tag, station_id);

-- Every mutating API call: who, what, when, and the HTTP status it ended with.
CREATE TABLE audit_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    status     INTEGER NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

-- Host names are case-insensitive: one tenant per name, whatever the case.
CREATE UNIQUE INDEX tenants_host_lower ON tenants (lower(ocpp_hostname));
