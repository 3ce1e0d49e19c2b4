-- Record the outcome of re-rendering message @P1, leased by @P2: status @P3, content
-- @P4..@P9, error @P10, next attempt in @P11 milliseconds; waiting (@P12: for a replica
-- behind the change, or for a slow merge function's turn) is not a render attempt.
UPDATE dbo.message
   SET status = @P3, recipient = @P4, recipient_name = @P5, locale = @P6, subject = @P7,
       body_html = @P8, body_text = @P9, last_error = @P10,
       render_attempts = render_attempts + IIF(@P12 = 1, 0, 1),
       next_attempt_at = DATEADD(millisecond, @P11, SYSUTCDATETIME()),
       lease_owner = NULL, lease_expires_at = NULL, updated_at = SYSUTCDATETIME()
 WHERE message_id = @P1
   AND lease_owner = @P2
   AND status = N'render_retry';
