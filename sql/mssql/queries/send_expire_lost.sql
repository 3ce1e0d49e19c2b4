-- Messages whose sender's lease ran out inside a provider call are in doubt, and so are
-- their open attempts. Returns how many went in doubt.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @lost TABLE (message_id bigint NOT NULL, send_attempts int NOT NULL);

UPDATE dbo.message
   SET status = N'in_doubt',
       last_error = N'the sender''s lease ran out during the provider call',
       lease_owner = NULL, lease_expires_at = NULL, updated_at = SYSUTCDATETIME()
OUTPUT inserted.message_id, inserted.send_attempts INTO @lost (message_id, send_attempts)
 WHERE status = N'sending' AND lease_expires_at < SYSUTCDATETIME();

UPDATE a
   SET outcome = N'in_doubt', finished_at = SYSUTCDATETIME(),
       error = N'the sender''s lease ran out during the provider call'
  FROM dbo.delivery_attempt AS a
  JOIN @lost AS l ON l.message_id = a.message_id AND l.send_attempts = a.attempt;

COMMIT TRANSACTION;

SELECT COUNT_BIG(*) AS lost FROM @lost;
