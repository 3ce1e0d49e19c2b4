-- Take or renew the lease ($1 owner, $2 seconds) on schedules $3 that no live detector holds.
-- Only the rows this detector now holds come back, with their marks.
INSERT INTO detector_watermark (schedule_id, owner, lease_expires_at)
SELECT id, $1, now() + make_interval(secs => $2::float8)
  FROM unnest($3::bigint[]) AS id
    ON CONFLICT (schedule_id) DO UPDATE
   SET owner = excluded.owner, lease_expires_at = excluded.lease_expires_at
 WHERE detector_watermark.owner = excluded.owner
    OR detector_watermark.owner IS NULL
    OR detector_watermark.lease_expires_at < now()
RETURNING schedule_id, hold_back, change_value, key_value, position, watching_since,
          source_definition
