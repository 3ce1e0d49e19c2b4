-- In-doubt messages their provider has reported on since their last call began are settled by
-- the latest report: the provider has them, so they are `sent` with its id, or `failed` with
-- its reason when it reports it could not deliver them (Twilio `failed` / `undelivered`,
-- SendGrid `dropped` / `bounce`). Never resent either way. Only a report on the message's own
-- channel counts. Their attempt rows say how they were settled. One transaction; returns
-- each settled message.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @latest TABLE (
    message_id          bigint        NOT NULL PRIMARY KEY,
    send_attempts       int           NOT NULL,
    started_at          datetime2(7)  NOT NULL,
    event               nvarchar(32)  NOT NULL,
    reason              nvarchar(max) NULL,
    provider_message_id nvarchar(200) NULL,
    undelivered         bit           NOT NULL
);
DECLARE @settled TABLE (
    message_id          bigint        NOT NULL PRIMARY KEY,
    channel             nvarchar(8)   NOT NULL,
    status              nvarchar(16)  NOT NULL,
    send_attempts       int           NOT NULL,
    provider_message_id nvarchar(200) NULL
);

WITH reports AS (
    SELECT m.message_id, m.send_attempts, a.started_at, d.event, d.reason,
           d.provider_message_id,
           CASE WHEN d.event IN (N'failed', N'undelivered', N'dropped', N'bounce')
                THEN 1 ELSE 0 END AS undelivered,
           ROW_NUMBER() OVER (PARTITION BY m.message_id
                              -- within one post and second, by the lifecycle
                              ORDER BY d.received_at DESC,
                                       CASE WHEN d.occurred_at IS NULL THEN 1 ELSE 0 END,
                                       d.occurred_at DESC,
                                       CASE WHEN d.event = N'processed' THEN 0
                                            WHEN d.event = N'deferred' THEN 1
                                            WHEN d.event IN (N'sent', N'delivered') THEN 2
                                            ELSE 3 END DESC) AS newest
      FROM dbo.message AS m
      JOIN dbo.delivery_attempt AS a
        ON a.message_id = m.message_id AND a.attempt = m.send_attempts
      JOIN dbo.delivery_event AS d
        ON d.message_id = m.message_id AND d.received_at >= a.started_at
     WHERE m.status = N'in_doubt'
       AND d.provider = CASE m.channel WHEN N'email' THEN N'sendgrid' ELSE N'twilio' END
)
INSERT INTO @latest (message_id, send_attempts, started_at, event, reason,
                     provider_message_id, undelivered)
SELECT message_id, send_attempts, started_at, event, reason, provider_message_id, undelivered
  FROM reports
 WHERE newest = 1;

UPDATE m
   SET status = CASE WHEN l.undelivered = 1 THEN N'failed' ELSE N'sent' END,
       provider_message_id = COALESCE(m.provider_message_id, l.provider_message_id),
       last_error = CASE WHEN l.undelivered = 1
                         THEN CONCAT(N'the provider reported ', l.event,
                                     CASE WHEN l.reason IS NULL THEN N'' ELSE CONCAT(N': ', l.reason) END)
                    END,
       sent_at = CASE WHEN l.undelivered = 1 THEN NULL ELSE l.started_at END,
       updated_at = SYSUTCDATETIME()
OUTPUT inserted.message_id, inserted.channel, inserted.status, inserted.send_attempts,
       inserted.provider_message_id
  INTO @settled (message_id, channel, status, send_attempts, provider_message_id)
  FROM dbo.message AS m WITH (UPDLOCK)
  JOIN @latest AS l ON l.message_id = m.message_id
 WHERE m.send_attempts = l.send_attempts
   AND m.status = N'in_doubt';

UPDATE a
   SET outcome = s.status, provider_message_id = s.provider_message_id,
       error = CONCAT(N'settled: the provider reported ', l.event,
                      CASE WHEN l.reason IS NULL THEN N'' ELSE CONCAT(N': ', l.reason) END,
                      N'; in doubt before: ', COALESCE(a.error, N'no reason recorded'))
  FROM dbo.delivery_attempt AS a
  JOIN @settled AS s ON s.message_id = a.message_id AND a.attempt = s.send_attempts
  JOIN @latest AS l ON l.message_id = s.message_id;

COMMIT TRANSACTION;

SELECT message_id, channel, status FROM @settled;
