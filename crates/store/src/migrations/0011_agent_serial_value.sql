-- Serials are stored as the integer's value (no DER sign octet), as
-- `openssl x509 -serial` prints them. Before this, a serial whose first
-- value octet had its high bit set (pebble's do, half the time) was stored
-- with a leading "00"; strip it so old and new rows agree.
UPDATE agent_certificates SET serial = substr(serial, 3)
    WHERE serial LIKE '00%' AND length(serial) > 2 AND substr(serial, 3, 1) IN ('8', '9', 'a', 'b', 'c', 'd', 'e', 'f');
UPDATE agent_slots SET current_serial = substr(current_serial, 3)
    WHERE current_serial LIKE '00%' AND length(current_serial) > 2 AND substr(current_serial, 3, 1) IN ('8', '9', 'a', 'b', 'c', 'd', 'e', 'f');
UPDATE agent_pending_revocations SET serial = substr(serial, 3)
    WHERE serial LIKE '00%' AND length(serial) > 2 AND substr(serial, 3, 1) IN ('8', '9', 'a', 'b', 'c', 'd', 'e', 'f')
