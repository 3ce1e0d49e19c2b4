-- In-doubt messages (of tenant @P1, or all when NULL), longest in doubt first, at most @P2,
-- with how many there are in all.
SELECT TOP (@P2) message_id, COUNT_BIG(*) OVER () AS total
  FROM dbo.message
 WHERE status = N'in_doubt'
   AND (@P1 IS NULL OR tenant = @P1)
 ORDER BY updated_at, message_id;
