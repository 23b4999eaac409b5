-- Indexes that keep a connect independent of the size of the fleet.
--
-- A station that connects with a certificate supersedes its older live ones
-- (tenant, station, revoked_at IS NULL, superseded_at IS NULL): with only
-- (tenant_id, station_id) and (tenant_id, revoked_at) to choose from, SQLite
-- took the latter and read every live certificate of the tenant per connect.
DROP INDEX certificates_station;
CREATE INDEX certificates_station ON certificates (tenant_id, station_id, revoked_at, superseded_at);
-- The maintenance tick revokes certificates superseded longer ago than the
-- grace period: only those still live and superseded are indexed.
CREATE INDEX certificates_superseded_live ON certificates (revoked_at, superseded_at)
    WHERE revoked_at IS NULL AND superseded_at IS NOT NULL;
-- The renewal engine's tick looks for live certificates by expiry.
CREATE INDEX certificates_live_expiry ON certificates (revoked_at, superseded_at, not_after);
