-- In-doubt messages on channel @P1 whose last call began within the last @P2 milliseconds,
-- the oldest first, at most @P3: what the sender looks for at the provider.
SELECT TOP (@P3) m.message_id, m.send_attempts AS attempt, COALESCE(m.account, m.channel) AS account, m.recipient, m.body_text,
       a.started_at, a.finished_at
  FROM dbo.message AS m
  JOIN dbo.delivery_attempt AS a ON a.message_id = m.message_id AND a.attempt = m.send_attempts
 WHERE m.status = N'in_doubt'
   AND m.channel = @P1
   AND a.started_at > DATEADD(millisecond, -@P2, SYSUTCDATETIME())
 ORDER BY a.started_at;
