-- Record how attempt @P2 of message @P1 ended: message status @P3, attempt outcome @P4,
-- HTTP status @P5, provider message id @P6, error @P7, next attempt in @P8 milliseconds;
-- @P9 is 1 when the attempt is not counted against max_attempts.
-- A late answer for a message already declared in doubt still records the truth.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

UPDATE dbo.message
   SET status = @P3,
       provider_message_id = COALESCE(@P6, provider_message_id),
       last_error = @P7,
       sent_at = CASE WHEN @P3 = N'sent' THEN SYSUTCDATETIME() END,
       next_attempt_at = DATEADD(millisecond, @P8, SYSUTCDATETIME()),
       uncounted_attempts = uncounted_attempts + @P9,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = SYSUTCDATETIME()
 WHERE message_id = @P1
   AND send_attempts = @P2
   AND status IN (N'sending', N'in_doubt');

UPDATE dbo.delivery_attempt
   SET finished_at = SYSUTCDATETIME(), outcome = @P4, http_status = @P5,
       provider_message_id = @P6, error = @P7
 WHERE message_id = @P1
   AND attempt = @P2
   AND (outcome IS NULL OR outcome = N'in_doubt');

COMMIT TRANSACTION;
