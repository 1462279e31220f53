-- New damage is never hidden behind old damage (issue 12, item 9). An open check alert stays one row per
-- (check, day), but it remembers which failing objects it has already announced in the current episode, so
-- a later evaluation that finds objects not seen before sends one more notification naming only those.
-- Every column is reset when the key reopens (a new episode). Every statement is idempotent.

ALTER TABLE vault_secure.alerts
    -- the failing keys named so far in this episode (the union of each evaluation's shown list)
    ADD COLUMN IF NOT EXISTS seen_keys       TEXT[]      NOT NULL DEFAULT '{}',
    -- short hashes of every failing object seen so far in this episode: the shown keys plus the check's
    -- `failing_key_hashes`, which covers objects beyond the shown list
    ADD COLUMN IF NOT EXISTS seen_key_hashes TEXT[]      NOT NULL DEFAULT '{}',
    -- the highest `objects_failing` of the episode: the fallback for objects no hash covers
    ADD COLUMN IF NOT EXISTS peak_failing    INTEGER,
    -- how many times new failing objects extended the episode, and when it last happened
    ADD COLUMN IF NOT EXISTS extensions      INTEGER     NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS extended_at     TIMESTAMPTZ;

-- Alerts already open when this runs announced the keys of their payload: remember them, so the first
-- evaluation after the upgrade does not announce them again. The hash is alerting/payload.py's key_hash:
-- the first 16 hex digits of the SHA-256 of the key's UTF-8 bytes.
UPDATE vault_secure.alerts a
SET seen_keys = k.keys,
    seen_key_hashes = k.hashes,
    peak_failing = CASE WHEN jsonb_typeof(a.last_payload -> 'details' -> 'objects_failing') = 'number'
                        THEN (a.last_payload -> 'details' ->> 'objects_failing')::integer END
FROM (
    SELECT alert_key,
           coalesce(array_agg(key ORDER BY key) FILTER (WHERE key IS NOT NULL), '{}') AS keys,
           coalesce(array_agg(left(encode(sha256(convert_to(key, 'UTF8')), 'hex'), 16) ORDER BY key)
                    FILTER (WHERE key IS NOT NULL), '{}') AS hashes
    FROM vault_secure.alerts
    LEFT JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(last_payload -> 'failing_keys') = 'array' THEN last_payload -> 'failing_keys'
             ELSE '[]'::jsonb END) AS key ON true
    WHERE state = 'open'
    GROUP BY alert_key
) k
WHERE a.alert_key = k.alert_key AND a.state = 'open' AND a.seen_key_hashes = '{}' AND a.peak_failing IS NULL;
