-- The planner's facts about each slot's current certificate, kept on the
-- slot row itself: planning 100k certificates is then one scan of small
-- rows, instead of a join that reads every certificate row (each holds its
-- PEM chain and key, a page apiece). Written in the same transaction as the
-- certificate (store_issued) and as its revocation (mark_revoked).
ALTER TABLE agent_slots ADD COLUMN current_spki_sha256 TEXT;
ALTER TABLE agent_slots ADD COLUMN current_not_before BIGINT;
ALTER TABLE agent_slots ADD COLUMN current_not_after BIGINT;
ALTER TABLE agent_slots ADD COLUMN current_revoked_at BIGINT;
ALTER TABLE agent_slots ADD COLUMN current_revocation_reason TEXT;
UPDATE agent_slots SET
    current_spki_sha256 = (SELECT c.spki_sha256 FROM agent_certificates c WHERE c.issuer = agent_slots.current_issuer AND c.serial = agent_slots.current_serial),
    current_not_before = (SELECT c.not_before FROM agent_certificates c WHERE c.issuer = agent_slots.current_issuer AND c.serial = agent_slots.current_serial),
    current_not_after = (SELECT c.not_after FROM agent_certificates c WHERE c.issuer = agent_slots.current_issuer AND c.serial = agent_slots.current_serial),
    current_revoked_at = (SELECT c.revoked_at FROM agent_certificates c WHERE c.issuer = agent_slots.current_issuer AND c.serial = agent_slots.current_serial),
    current_revocation_reason = (SELECT c.revocation_reason FROM agent_certificates c WHERE c.issuer = agent_slots.current_issuer AND c.serial = agent_slots.current_serial);
CREATE INDEX agent_slots_current ON agent_slots (current_issuer, current_serial)
