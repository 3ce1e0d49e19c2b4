-- Lease (@P1 owner, @P2 milliseconds) up to @P3 due render retries, the longest due first.
-- TOP in an UPDATE takes no ORDER BY, so the ordered TOP is an updatable CTE. UPDLOCK,
-- READPAST, ROWLOCK is SQL Server's FOR UPDATE SKIP LOCKED: rows another renderer is
-- claiming are skipped, not waited for. READPAST needs a locking read: READ COMMITTED or
-- REPEATABLE READ, and READCOMMITTEDLOCK for a database with READ_COMMITTED_SNAPSHOT on
-- (Azure SQL's default), whose READ COMMITTED otherwise reads row versions and refuses
-- READPAST; under SNAPSHOT isolation it is not honoured, so these sessions must not use
-- SNAPSHOT. detected_at: when the change was detected, or for messages queued before that
-- was recorded, when the message was. OUTPUT goes INTO a table variable: a bare OUTPUT fails
-- (error 334) once the table has a trigger.
DECLARE @leased TABLE (
    message_id      bigint        NOT NULL,
    tenant          nvarchar(128) NOT NULL,
    schedule_id     bigint        NOT NULL,
    source_key      nvarchar(400) NOT NULL,
    change_version  nvarchar(64)  NOT NULL,
    channel         nvarchar(8)   NOT NULL,
    render_attempts int           NOT NULL,
    detected_at     datetime2(7)  NULL
);

WITH due AS (
    SELECT TOP (@P3) message_id, tenant, schedule_id, source_key, change_version, channel,
           render_attempts, detected_at, created_at, lease_owner, lease_expires_at
      FROM dbo.message WITH (UPDLOCK, READPAST, ROWLOCK, READCOMMITTEDLOCK)
     WHERE status = N'render_retry'
       AND next_attempt_at <= SYSUTCDATETIME()
       AND (lease_expires_at IS NULL OR lease_expires_at < SYSUTCDATETIME())
     ORDER BY next_attempt_at
)
UPDATE due
   SET lease_owner = @P1, lease_expires_at = DATEADD(millisecond, @P2, SYSUTCDATETIME())
OUTPUT inserted.message_id, inserted.tenant, inserted.schedule_id, inserted.source_key,
       inserted.change_version, inserted.channel, inserted.render_attempts,
       COALESCE(inserted.detected_at, inserted.created_at)
  INTO @leased (message_id, tenant, schedule_id, source_key, change_version, channel,
                render_attempts, detected_at);

SELECT message_id, tenant, schedule_id, source_key, change_version, channel, render_attempts,
       detected_at
  FROM @leased;
