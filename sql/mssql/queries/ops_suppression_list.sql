-- Suppression entries of tenant @P1 (NULL: every tenant) whose address contains @P2 (NULL:
-- any), newest first, at most @P3.
SELECT TOP (@P3) tenant, channel, address, reason, source, created_at
  FROM dbo.suppression
 WHERE (@P1 IS NULL OR tenant = @P1)
   AND (@P2 IS NULL OR CHARINDEX(LOWER(@P2), address_lower) > 0)
 ORDER BY created_at DESC;
