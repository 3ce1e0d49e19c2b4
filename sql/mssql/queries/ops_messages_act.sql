-- Operator action @P2 on messages @P1 (a JSON array of ids): each one in status @P3 moves to
-- @P4, and the action is recorded with who (@P5) and why (@P6); the others are left as they
-- are. To `queued`: due now, with a fresh attempt budget (the calls made so far are no
-- longer counted against max_attempts), through its account (the channel's default for a
-- message from before there were accounts). To `sent`: sent when its last call began. Returns
-- every requested id with its status now (NULL: no such message) and whether it moved.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @ids TABLE (message_id bigint NOT NULL PRIMARY KEY);
DECLARE @acted TABLE (message_id bigint NOT NULL PRIMARY KEY, status nvarchar(16) NOT NULL);

INSERT INTO @ids (message_id)
SELECT DISTINCT ids.message_id FROM OPENJSON(@P1) WITH (message_id bigint '$') AS ids;

UPDATE m
   SET status = @P4,
       next_attempt_at = CASE WHEN @P4 = N'queued' THEN SYSUTCDATETIME() ELSE m.next_attempt_at END,
       account = COALESCE(m.account, m.channel),
       uncounted_attempts = CASE WHEN @P4 = N'queued' THEN m.send_attempts
                                 ELSE m.uncounted_attempts END,
       sent_at = CASE WHEN @P4 = N'sent'
                      THEN COALESCE(m.sent_at, a.started_at, SYSUTCDATETIME()) ELSE m.sent_at END,
       last_error = CASE WHEN @P4 = N'sent' THEN NULL ELSE m.last_error END,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = SYSUTCDATETIME()
OUTPUT inserted.message_id, inserted.status INTO @acted (message_id, status)
  FROM dbo.message AS m
  JOIN @ids AS i ON i.message_id = m.message_id
  LEFT JOIN dbo.delivery_attempt AS a
    ON a.message_id = m.message_id AND a.attempt = m.send_attempts
 WHERE m.status = @P3;

INSERT INTO dbo.operator_action (action, message_id, from_status, to_status, actor, reason)
SELECT @P2, message_id, @P3, @P4, @P5, @P6 FROM @acted;

COMMIT TRANSACTION;

SELECT i.message_id, COALESCE(x.status, m.status) AS status,
       CAST(CASE WHEN x.message_id IS NULL THEN 0 ELSE 1 END AS bit) AS acted
  FROM @ids AS i
  LEFT JOIN @acted AS x ON x.message_id = i.message_id
  LEFT JOIN dbo.message AS m ON m.message_id = i.message_id;
