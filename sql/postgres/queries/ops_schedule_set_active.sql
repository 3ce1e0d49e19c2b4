-- Pauses ($3 false) or resumes ($3 true) schedule $2 of tenant $1; when that changes it,
-- records operator action $6 with who ($4) and why ($5). Returns the schedule's id and
-- whether it was active before; no row when there is no such schedule.
WITH target AS (
    SELECT schedule_id, active
      FROM schedule
     WHERE tenant = $1 AND name = $2
       FOR UPDATE
), changed AS (
    UPDATE schedule s
       SET active = $3::boolean, updated_at = now()
      FROM target
     WHERE s.schedule_id = target.schedule_id
       AND target.active <> $3::boolean
    RETURNING s.schedule_id
), recorded AS (
    INSERT INTO operator_action (action, schedule_id, actor, reason)
    SELECT $6, schedule_id, $4, $5 FROM changed
)
SELECT schedule_id, active AS was_active FROM target
