-- Records provider events (@P1: a JSON array, one object per event: provider, event_id,
-- message_id, provider_message_id, event, reason, occurred_at in ISO 8601, payload), each
-- once: an event already recorded is left as it is. An event naming a message that does
-- not exist is kept without it. Any new event of a message in doubt settles it: the
-- provider has the message, so it is `sent`, with the provider's id; its attempt row says
-- so. One
-- transaction; the insert takes UPDLOCK, HOLDLOCK on the key it checks, so two posts of
-- the same event cannot both record it. Returns how many events were new, and how many
-- messages they settled.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @recorded TABLE (message_id bigint NULL, provider_message_id nvarchar(200) NULL);
DECLARE @settled TABLE (message_id bigint NOT NULL PRIMARY KEY, send_attempts int NOT NULL,
                        provider_message_id nvarchar(200) NULL);

WITH e AS (
    SELECT provider, event_id, message_id, provider_message_id, event, reason, occurred_at,
           payload,
           ROW_NUMBER() OVER (PARTITION BY provider, event_id ORDER BY (SELECT NULL)) AS copy
      FROM OPENJSON(@P1) WITH (
               provider            nvarchar(16)  '$.provider',
               event_id            nvarchar(200) '$.event_id',
               message_id          bigint        '$.message_id',
               provider_message_id nvarchar(200) '$.provider_message_id',
               event               nvarchar(32)  '$.event',
               reason              nvarchar(max) '$.reason',
               occurred_at         datetimeoffset(7) '$.occurred_at',
               payload             nvarchar(max) '$.payload')
)
INSERT INTO dbo.delivery_event (provider, event_id, message_id, provider_message_id, event,
                                reason, occurred_at, payload)
OUTPUT inserted.message_id, inserted.provider_message_id
  INTO @recorded (message_id, provider_message_id)
SELECT e.provider, e.event_id, m.message_id, e.provider_message_id, e.event, e.reason,
       CAST(SWITCHOFFSET(e.occurred_at, '+00:00') AS datetime2(7)), e.payload
  FROM e
  LEFT JOIN dbo.message AS m ON m.message_id = e.message_id
 WHERE e.copy = 1
   AND NOT EXISTS (SELECT 1
                     FROM dbo.delivery_event AS d WITH (UPDLOCK, HOLDLOCK)
                    WHERE d.provider = e.provider AND d.event_id = e.event_id);

UPDATE m
   SET status = N'sent',
       provider_message_id = COALESCE(m.provider_message_id, r.provider_message_id),
       last_error = NULL,
       sent_at = (SELECT a.started_at
                    FROM dbo.delivery_attempt AS a
                   WHERE a.message_id = m.message_id AND a.attempt = m.send_attempts),
       updated_at = SYSUTCDATETIME()
OUTPUT inserted.message_id, inserted.send_attempts, inserted.provider_message_id
  INTO @settled (message_id, send_attempts, provider_message_id)
  FROM dbo.message AS m
  JOIN (SELECT message_id, MIN(provider_message_id) AS provider_message_id
          FROM @recorded
         WHERE message_id IS NOT NULL
         GROUP BY message_id) AS r ON r.message_id = m.message_id
 WHERE m.status = N'in_doubt';

UPDATE a
   SET outcome = N'sent', provider_message_id = s.provider_message_id,
       error = CONCAT(N'settled: the provider reported an event for it; in doubt before: ',
                      COALESCE(a.error, N'no reason recorded'))
  FROM dbo.delivery_attempt AS a
  JOIN @settled AS s ON s.message_id = a.message_id AND a.attempt = s.send_attempts;

COMMIT TRANSACTION;

SELECT (SELECT CAST(COUNT(*) AS bigint) FROM @recorded) AS recorded,
       (SELECT CAST(COUNT(*) AS bigint) FROM @settled) AS settled;
