-- The latest failures: messages `failed`, `render_failed` or `in_doubt` whose status was set
-- within the last @P1 milliseconds, newest first, at most @P2, with how many there are in
-- all. Read through the message_failures filtered index, so the cost follows the window.
SELECT TOP (@P2) message_id, COUNT_BIG(*) OVER () AS total
  FROM dbo.message
 WHERE status IN (N'failed', N'render_failed', N'in_doubt')
   AND updated_at > DATEADD(millisecond, -@P1, SYSUTCDATETIME())
 ORDER BY updated_at DESC, message_id DESC;
