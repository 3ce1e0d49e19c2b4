-- One row per schedule: how far the detector has emitted events, and which detector owns it.
-- change_value and key_value are the source's own text forms of the last emitted row's
-- change and key columns; the detector casts them back to the column types when it polls.

CREATE TABLE IF NOT EXISTS detector_watermark (
    schedule_id      bigint      PRIMARY KEY REFERENCES schedule ON DELETE CASCADE,
    change_value     text,       -- NULL until the detector has set its starting point
    key_value        text,       -- NULL while only a starting time is known
    owner            text,       -- detector instance holding the lease
    lease_expires_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
