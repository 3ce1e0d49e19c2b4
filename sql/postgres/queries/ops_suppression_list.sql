-- Suppression entries of tenant $1 (NULL: every tenant) whose address contains $2 (NULL:
-- any), newest first, at most $3.
SELECT tenant, channel, address, reason, source, created_at
  FROM suppression
 WHERE ($1::text IS NULL OR tenant = $1)
   AND ($2::text IS NULL OR strpos(lower(address), lower($2)) > 0)
 ORDER BY created_at DESC
 LIMIT $3
