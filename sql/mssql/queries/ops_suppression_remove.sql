-- Operator @P4 removes address @P3 (any letter case) from tenant @P1's suppression list for
-- channel @P2, because @P5: the entry moves to suppression_removed with who and why, in one
-- transaction. Returns the removed entry (none if the address was not on the list).
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @removed TABLE (
    tenant     nvarchar(128) NOT NULL,
    channel    nvarchar(8)   NOT NULL,
    address    nvarchar(320) NOT NULL,
    reason     nvarchar(max) NOT NULL,
    source     nvarchar(300) NULL,
    created_at datetime2(7)  NOT NULL
);

DELETE FROM dbo.suppression
OUTPUT deleted.tenant, deleted.channel, deleted.address, deleted.reason, deleted.source,
       deleted.created_at
  INTO @removed (tenant, channel, address, reason, source, created_at)
 WHERE tenant = @P1 AND channel = @P2 AND address_lower = LOWER(@P3);

INSERT INTO dbo.suppression_removed (tenant, channel, address, reason, source, created_at,
                                     removed_by, removed_why)
SELECT tenant, channel, address, reason, source, created_at, @P4, @P5 FROM @removed;

COMMIT TRANSACTION;

SELECT tenant, channel, address, reason, source, created_at FROM @removed;
