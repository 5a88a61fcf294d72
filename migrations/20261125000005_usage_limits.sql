-- Per-key usage limits: a number of remaining verifications, and a rate limit (hits per window).

ALTER TABLE api_keys
    ADD COLUMN remaining bigint CHECK (remaining >= 0),
    ADD COLUMN rate_limit integer CHECK (rate_limit > 0),
    ADD COLUMN rate_limit_window_seconds integer CHECK (rate_limit_window_seconds > 0),
    ADD CONSTRAINT api_keys_rate_limit_pair CHECK ((rate_limit IS NULL) = (rate_limit_window_seconds IS NULL));

-- Fixed-window hit counters shared by every replica; old windows are pruned.
CREATE TABLE key_rate_windows (
    key_id        text NOT NULL,
    window_start  timestamptz NOT NULL,
    hits          integer NOT NULL,
    CONSTRAINT key_rate_windows_pkey PRIMARY KEY (key_id, window_start)
);

CREATE INDEX key_rate_windows_start ON key_rate_windows (window_start);
