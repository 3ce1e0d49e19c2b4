-- In-doubt message @P1 whose last call was attempt @P2 is `sent` after all: its provider
-- shows it with id @P3 (@P4 says how it was found). Not if that id is already another
-- message's of the same recipient (two identical messages: each provider message settles
-- one), nor if the message moved on meanwhile. Its attempt row keeps why it was in doubt.
-- One transaction; returns how many were settled.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @settled TABLE (message_id bigint NOT NULL PRIMARY KEY);

UPDATE m
   SET status = N'sent', provider_message_id = @P3, last_error = NULL,
       sent_at = (SELECT a.started_at
                    FROM dbo.delivery_attempt AS a
                   WHERE a.message_id = m.message_id AND a.attempt = m.send_attempts),
       updated_at = SYSUTCDATETIME()
OUTPUT inserted.message_id INTO @settled (message_id)
  FROM dbo.message AS m
 WHERE m.message_id = @P1
   AND m.send_attempts = @P2
   AND m.status = N'in_doubt'
   AND NOT EXISTS (SELECT 1
                     FROM dbo.message AS o
                    WHERE o.tenant = m.tenant
                      AND o.recipient = m.recipient
                      AND o.provider_message_id = @P3);

UPDATE a
   SET outcome = N'sent', provider_message_id = @P3,
       error = CONCAT(@P4, N'; in doubt before: ', COALESCE(a.error, N'no reason recorded'))
  FROM dbo.delivery_attempt AS a
  JOIN @settled AS s ON s.message_id = a.message_id
 WHERE a.attempt = @P2;

COMMIT TRANSACTION;

SELECT CAST(COUNT(*) AS bigint) AS settled FROM @settled;
