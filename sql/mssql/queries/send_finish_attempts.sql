-- Record how attempts ended (@P1: a JSON array, one object per attempt: message_id,
-- attempt, message status, attempt outcome, http_status, provider_message_id, error,
-- retry_ms until the next attempt, uncounted = 1 when the attempt is not counted against
-- max_attempts). A late answer for a message already declared in doubt still records the
-- truth. DATEADD takes an int: retry delays arrive capped at 2^31 - 1 ms.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @o TABLE (
    message_id          bigint        NOT NULL,
    attempt             int           NOT NULL,
    status              nvarchar(16)  NOT NULL,
    outcome             nvarchar(16)  NOT NULL,
    http_status         int           NULL,
    provider_message_id nvarchar(max) NULL,
    error               nvarchar(max) NULL,
    retry_ms            int           NOT NULL,
    uncounted           int           NOT NULL,
    PRIMARY KEY (message_id, attempt)
);

INSERT INTO @o
SELECT message_id, attempt, status, outcome, http_status, provider_message_id, error,
       retry_ms, uncounted
  FROM OPENJSON(@P1) WITH (
           message_id bigint, attempt int, status nvarchar(16), outcome nvarchar(16),
           http_status int, provider_message_id nvarchar(max), error nvarchar(max),
           retry_ms int, uncounted int);

UPDATE m
   SET status = o.status,
       provider_message_id = COALESCE(o.provider_message_id, m.provider_message_id),
       last_error = o.error,
       sent_at = CASE WHEN o.status = N'sent' THEN SYSUTCDATETIME() END,
       next_attempt_at = DATEADD(millisecond, o.retry_ms, SYSUTCDATETIME()),
       uncounted_attempts = m.uncounted_attempts + o.uncounted,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = SYSUTCDATETIME()
  FROM dbo.message AS m
  JOIN @o AS o ON o.message_id = m.message_id AND o.attempt = m.send_attempts
 WHERE m.status IN (N'sending', N'in_doubt');

UPDATE a
   SET finished_at = SYSUTCDATETIME(), outcome = o.outcome, http_status = o.http_status,
       provider_message_id = o.provider_message_id, error = o.error
  FROM dbo.delivery_attempt AS a
  JOIN @o AS o ON o.message_id = a.message_id AND o.attempt = a.attempt
 WHERE a.outcome IS NULL OR a.outcome = N'in_doubt';

COMMIT TRANSACTION;
