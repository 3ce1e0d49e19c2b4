-- Operator @P4 removes address @P3 (any letter case) from tenant @P1's suppression list for
-- channel @P2, because @P5: the entry for all the tenant's schedules, or with @P6 the entry
-- for that schedule only (its name, or its id, as the list shows a deleted schedule). The entry moves to suppression_removed with who and
-- why, in one transaction. Returns the removed entry (none if the address was not on the
-- list).
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @removed TABLE (
    tenant      nvarchar(128) NOT NULL,
    channel     nvarchar(8)   NOT NULL,
    address     nvarchar(320) NOT NULL,
    reason      nvarchar(max) NOT NULL,
    source      nvarchar(300) NULL,
    created_at  datetime2(7)  NOT NULL,
    schedule_id bigint        NULL
);

DELETE FROM dbo.suppression
OUTPUT deleted.tenant, deleted.channel, deleted.address, deleted.reason, deleted.source,
       deleted.created_at, deleted.schedule_id
  INTO @removed (tenant, channel, address, reason, source, created_at, schedule_id)
 WHERE tenant = @P1 AND channel = @P2 AND address_lower = LOWER(@P3)
   AND ((@P6 IS NULL AND schedule_id IS NULL)
        OR schedule_id = COALESCE((SELECT sc.schedule_id FROM dbo.schedule AS sc
                                    WHERE sc.tenant = @P1 AND sc.name = @P6),
                                   TRY_CAST(@P6 AS bigint)));

INSERT INTO dbo.suppression_removed (tenant, channel, address, reason, source, created_at,
                                     schedule_id, removed_by, removed_why)
SELECT tenant, channel, address, reason, source, created_at, schedule_id, @P4, @P5
  FROM @removed;

COMMIT TRANSACTION;

SELECT tenant, channel, address, reason, source, created_at,
       CASE WHEN schedule_id IS NOT NULL THEN @P6 END AS schedule
  FROM @removed;
