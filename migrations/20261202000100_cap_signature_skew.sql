-- signature_max_skew_seconds is capped at 900: the replay store keeps accepted signatures for
-- that long, so a wider window would accept a signature again once its entry was pruned.
-- Stored values above the cap (the old limit was 3600) are brought down to it.
UPDATE tenants
SET settings = jsonb_set(settings, '{signature_max_skew_seconds}', '900'::jsonb)
WHERE CASE
    WHEN jsonb_typeof(settings -> 'signature_max_skew_seconds') = 'number'
        THEN (settings ->> 'signature_max_skew_seconds')::numeric > 900
    ELSE false
END;
