-- Calls whose outcome is unknown, and claims left by a process that died.

-- A01: a BasicAuthPassword the station received (SetVariables) without the CSMS
-- learning whether it took it. Until the station logs in with one of the two,
-- both are accepted; that login settles which one stays.
ALTER TABLE stations ADD COLUMN pending_password_hash TEXT;

-- A02/A03: who claimed a request (issuing, delivering): the node id, stable
-- across restarts, and the instance, new at every start. A node starting again
-- releases the claims of its earlier instances.
ALTER TABLE certificate_requests ADD COLUMN claim_node TEXT;
ALTER TABLE certificate_requests ADD COLUMN claim_instance TEXT;
