-- station_messages_volume (tenant_id, station_id, id, payload_bytes) serves
-- every lookup station_messages_station (tenant_id, station_id, id) served: the
-- narrower index only cost every stored report one more B-tree page written.
DROP INDEX station_messages_station;
