-- A customer key's last use is read from its counted verifications instead of being written to
-- api_keys once per key and flush: the VALID counter of a minute keeps the instant of its newest
-- verification. api_keys.last_used_at still holds service tokens' last use, and what the pruner
-- folds in from counters it is about to delete.
ALTER TABLE verification_counts ADD COLUMN last_at timestamptz;

CREATE INDEX verification_counts_last_valid ON verification_counts (key_id, minute) WHERE code = 'VALID';
