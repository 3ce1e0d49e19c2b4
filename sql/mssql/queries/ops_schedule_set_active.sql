-- Pauses (@P3 0) or resumes (@P3 1) schedule @P2 of tenant @P1; when that changes it,
-- records operator action @P6 with who (@P4) and why (@P5). Returns the schedule's id and
-- whether it was active before; no row when there is no such schedule.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @target TABLE (schedule_id bigint NOT NULL, active bit NOT NULL);

INSERT INTO @target (schedule_id, active)
SELECT schedule_id, active
  FROM dbo.schedule WITH (UPDLOCK, HOLDLOCK)
 WHERE tenant = @P1 AND name = @P2;

UPDATE s
   SET active = @P3, updated_at = SYSUTCDATETIME()
  FROM dbo.schedule AS s
  JOIN @target AS t ON t.schedule_id = s.schedule_id
 WHERE t.active <> @P3;

INSERT INTO dbo.operator_action (action, schedule_id, actor, reason)
SELECT @P6, schedule_id, @P4, @P5 FROM @target WHERE active <> @P3;

COMMIT TRANSACTION;

SELECT schedule_id, active AS was_active FROM @target;
