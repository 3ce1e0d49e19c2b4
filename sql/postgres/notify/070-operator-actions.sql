-- What operators did with heraldctl, one row per action, with who and why: settling an
-- in-doubt message (`resolve_sent`, `resolve_resend`, `resolve_failed`), putting a failed
-- one back in the queue (`requeue`), pausing or resuming a schedule (`pause`, `resume`).
-- A message action names its message and the status it moved from and to; a schedule
-- action its schedule.
--   SELECT * FROM operator_action WHERE message_id = 42 ORDER BY acted_at;

CREATE TABLE IF NOT EXISTS operator_action (
    action_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action      text        NOT NULL CHECK (action IN (
                    'resolve_sent', 'resolve_resend', 'resolve_failed', 'requeue',
                    'pause', 'resume')),
    message_id  bigint      REFERENCES message ON DELETE CASCADE,
    schedule_id bigint      REFERENCES schedule ON DELETE CASCADE,
    from_status text,
    to_status   text,
    actor       text        NOT NULL,
    reason      text,
    acted_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((message_id IS NULL) <> (schedule_id IS NULL))
);

CREATE INDEX IF NOT EXISTS operator_action_message ON operator_action (message_id)
    WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS operator_action_schedule ON operator_action (schedule_id)
    WHERE schedule_id IS NOT NULL;

-- `heraldctl in-doubt list`: the few messages waiting for a person, without a scan.
CREATE INDEX IF NOT EXISTS message_in_doubt ON message (updated_at) WHERE status = 'in_doubt';

-- `heraldctl failures` and the status page: the latest failures, newest first, without a scan.
CREATE INDEX IF NOT EXISTS message_failures ON message (updated_at)
    WHERE status IN ('failed', 'render_failed', 'in_doubt');
