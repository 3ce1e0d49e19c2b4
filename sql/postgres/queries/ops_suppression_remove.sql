-- Operator $4 removes address $3 (any letter case) from tenant $1's suppression list for
-- channel $2, because $5: the entry moves to suppression_removed with who and why. Returns
-- the removed entry (none if the address was not on the list).
WITH removed AS (
    DELETE FROM suppression
     WHERE tenant = $1 AND channel = $2 AND lower(address) = lower($3)
    RETURNING tenant, channel, address, reason, source, created_at
), kept AS (
    INSERT INTO suppression_removed (tenant, channel, address, reason, source, created_at,
                                     removed_by, removed_why)
    SELECT tenant, channel, address, reason, source, created_at, $4, $5 FROM removed
)
SELECT tenant, channel, address, reason, source, created_at FROM removed
