-- One row per schedule: where the detector stands, and which detector owns it.
--   hold_back     the hold-back line W: every row whose change value is below it has been
--                 emitted. Polls read again from here. NULL until the detector has started
--                 the schedule. now() - hold_back is how far detection is held back, by the
--                 oldest transaction still open on the source, the replica's lag, and G.
--   change_value  the frontier, the highest (change, key) read: the source's own text forms
--   key_value     of the row's change and key columns (NULL: nothing read yet).
--   position      the detector's progress in the engine's terms: PostgreSQL
--                 `system_identifier:xmin` of the last poll's snapshot.
--   watching_since when the detector started the schedule: earlier changes are not notified
--                 (nothing is backfilled), and the sweep and audits never look below it.
--   source_definition the schedule's table, key and change column the mark belongs to: when the
--                 admin changes them, the schedule starts afresh.

CREATE TABLE IF NOT EXISTS detector_watermark (
    schedule_id      bigint      PRIMARY KEY REFERENCES schedule ON DELETE CASCADE,
    hold_back        timestamptz,
    change_value     text,
    key_value        text,
    position         text,
    watching_since   timestamptz,
    source_definition text,
    owner            text,       -- detector instance holding the lease
    lease_expires_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Watermarks from before the hold-back line: everything below the old watermark was emitted.
ALTER TABLE detector_watermark ADD COLUMN IF NOT EXISTS hold_back timestamptz;
ALTER TABLE detector_watermark ADD COLUMN IF NOT EXISTS position text;
ALTER TABLE detector_watermark ADD COLUMN IF NOT EXISTS watching_since timestamptz;
ALTER TABLE detector_watermark ADD COLUMN IF NOT EXISTS source_definition text;
UPDATE detector_watermark
   SET hold_back = CAST(change_value AS timestamp) AT TIME ZONE 'UTC',
       change_value = CASE WHEN key_value IS NULL THEN NULL ELSE change_value END
 WHERE hold_back IS NULL
   AND change_value IS NOT NULL;

-- Changes the detector's polls missed (their transaction broke the max_write_delay
-- assumption) and the sweep or an audit found and emitted, late: one row per change.
--   SELECT * FROM late_change ORDER BY found_at DESC;
CREATE TABLE IF NOT EXISTS late_change (
    schedule_id    bigint      NOT NULL REFERENCES schedule ON DELETE CASCADE,
    source_key     text        NOT NULL,
    change_version text        NOT NULL,
    found_by       text        NOT NULL CHECK (found_by IN ('sweep', 'audit')),
    found_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, source_key, change_version)
);
