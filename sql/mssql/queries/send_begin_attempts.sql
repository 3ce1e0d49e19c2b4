-- Messages @P1 (a JSON array of ids), claimed by @P2, go `sending` right before their
-- provider calls, each with its attempt row; the lease is extended to cover the calls (@P3
-- milliseconds). Returns the messages still claimed, with their attempt numbers.
-- One transaction: a message never shows `sending` without its attempt row. XACT_ABORT
-- rolls it back on any error; a session that fails midway is closed by the engine.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @begun TABLE (message_id bigint NOT NULL PRIMARY KEY, send_attempts int NOT NULL);

UPDATE dbo.message
   SET status = N'sending', send_attempts = send_attempts + 1,
       lease_expires_at = DATEADD(millisecond, @P3, SYSUTCDATETIME()),
       updated_at = SYSUTCDATETIME()
OUTPUT inserted.message_id, inserted.send_attempts INTO @begun (message_id, send_attempts)
 WHERE message_id IN (SELECT ids.message_id FROM OPENJSON(@P1) WITH (message_id bigint '$') AS ids)
   AND lease_owner = @P2
   AND status = N'queued';

INSERT INTO dbo.delivery_attempt (message_id, attempt, sender)
OUTPUT inserted.message_id, inserted.attempt
SELECT message_id, send_attempts, @P2 FROM @begun;

COMMIT TRANSACTION;
