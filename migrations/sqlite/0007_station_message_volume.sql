-- Per-station quota on what is kept verbatim: the UTF-8 size of each payload,
-- and an index that sums a station's volume (newest first) without reading
-- the payloads.
ALTER TABLE station_messages ADD COLUMN payload_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE station_messages SET payload_bytes = length(CAST(payload AS BLOB));
CREATE INDEX station_messages_volume ON station_messages (tenant_id, station_id, id, payload_bytes);
