-- Replicas take slices of a key's `remaining` counter and spend them in memory, giving back what
-- they did not use. `limit_epoch` moves on whenever the counter is set, so that a slice taken
-- before is never given back into the new value.
ALTER TABLE api_keys ADD COLUMN limit_epoch bigint NOT NULL DEFAULT 0;

-- Rate limits count in buckets of a tenth of the window (a sliding window); a bucket can start
-- on a fraction of a second.
COMMENT ON TABLE key_rate_windows IS
    'Rate-limit buckets per limit family: slots taken (leased) per bucket of a tenth of the window';
