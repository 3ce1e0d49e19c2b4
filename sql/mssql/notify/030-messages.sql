-- The message queue. A row exists from the moment the renderer first sees a change event,
-- whatever became of it, so support can always answer "what happened to this change?".
--
-- status:
--   render_retry   merge procedure failed; the renderer tries again at next_attempt_at
--   render_failed  cannot be rendered (template error, bad merge result, retries exhausted)
--   skipped        nothing to send (the merge procedure named no recipient)
--   queued         rendered, waiting for the sender (next_attempt_at)
--   sending        the sender is inside the provider call
--   sent           the provider accepted it (provider_message_id, sent_at)
--   failed         the provider refused it, or send retries ran out
--   in_doubt       the sender lost track during the provider call: never resent automatically
--   suppressed     the recipient is on the suppression list
--
-- The notification's identity (tenant, schedule_id, source_key, change_version) is a UNIQUE
-- constraint, at most 256 + 8 + 800 + 128 = 1,192 bytes (under the 1,700-byte limit).
-- Inserts skip identities already present with NOT EXISTS (../queries/messages_insert.sql)
-- rather than with IGNORE_DUP_KEY = ON:
-- * IGNORE_DUP_KEY is a property of the index that silently changes every INSERT into the
--   table, an admin's or a tool's too; it still raises warning 3604 ("Duplicate key was
--   ignored.") on every replay, and when one OPENJSON batch holds the same identity twice
--   which of the two rows is kept is not specified.
-- * NOT EXISTS takes no key-range lock (no HOLDLOCK): with several renderers, locks on keys
--   that do not exist yet made inserts of different messages into one range take turns and
--   deadlock. Check and insert are still atomic where it matters: two renderers inserting
--   the same identity at once both pass the check, the constraint lets one in, and the
--   other's statement fails with error 2627 (or 2601) as a whole; the store repeats it
--   (`Notify::insert_messages`), and its NOT EXISTS now drops the identity the other
--   inserted, so the repeat inserts only what is still new. Duplicates inside one batch are
--   dropped first (ROW_NUMBER over the identity): the first in the batch wins, as with
--   PostgreSQL's ON CONFLICT DO NOTHING, and the statement's row count is the number of new
--   messages.
-- * The constraint is the last line of defence: nothing bypasses it, and a notification is
--   never queued twice.
-- MERGE would need HOLDLOCK (the range locks again) and brings its own list of known issues.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.message', N'U') IS NULL
    CREATE TABLE dbo.message (
        message_id          bigint        IDENTITY (1, 1) NOT NULL CONSTRAINT message_pk PRIMARY KEY,
        tenant              nvarchar(128) NOT NULL,
        schedule_id         bigint        NOT NULL,
        source_key          nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
        change_version      nvarchar(64)  COLLATE Latin1_General_100_BIN2 NOT NULL,
        channel             nvarchar(8)   NOT NULL CONSTRAINT message_channel CHECK (channel IN (N'email', N'sms')),
        status              nvarchar(16)  NOT NULL CONSTRAINT message_status CHECK (status IN (
                                N'render_retry', N'render_failed', N'skipped', N'queued', N'sending',
                                N'sent', N'failed', N'in_doubt', N'suppressed')),
        -- 320 characters: the longest email address (64 + 1 + 255). A longer recipient is
        -- recorded as render_failed by the engine, never truncated.
        recipient           nvarchar(320) NULL,
        recipient_name      nvarchar(max) NULL,
        locale              nvarchar(35)  NULL,
        subject             nvarchar(max) NULL,
        body_html           nvarchar(max) NULL,
        body_text           nvarchar(max) NULL,
        render_attempts     int           NOT NULL CONSTRAINT message_render_attempts_default DEFAULT 0,
        send_attempts       int           NOT NULL CONSTRAINT message_send_attempts_default DEFAULT 0,
        -- provider calls not counted against max_attempts: refused for our credentials, or
        -- made before an operator requeued the message (heraldctl)
        uncounted_attempts  int           NOT NULL CONSTRAINT message_uncounted_attempts_default DEFAULT 0,
        next_attempt_at     datetime2(7)  NOT NULL CONSTRAINT message_next_attempt_default DEFAULT SYSUTCDATETIME(),
        lease_owner         nvarchar(200) NULL,
        lease_expires_at    datetime2(7)  NULL,
        provider_message_id nvarchar(max) NULL,
        last_error          nvarchar(max) NULL,
        event_partition     int           NULL,
        event_offset        bigint        NULL,
        detected_at         datetime2(7)  NULL, -- when the detector emitted the change event (UTC)
        created_at          datetime2(7)  NOT NULL CONSTRAINT message_created_default DEFAULT SYSUTCDATETIME(),
        updated_at          datetime2(7)  NOT NULL CONSTRAINT message_updated_default DEFAULT SYSUTCDATETIME(),
        sent_at             datetime2(7)  NULL,
        -- The notification's identity: replays and rescans insert nothing new.
        CONSTRAINT message_identity UNIQUE (tenant, schedule_id, source_key, change_version)
    );
GO

-- An identity's key and version compare exactly, whatever the database's collation: `abc`
-- and `ABC` are two rows of a case-sensitive key, so two notifications (the queries compare
-- with this collation too). A queue made before is changed here, in one transaction: the
-- constraint comes off its columns and is built again, which reads the whole table under a
-- schema lock (stop the services for it).
SET XACT_ABORT ON;
IF EXISTS (SELECT 1 FROM sys.columns
            WHERE object_id = OBJECT_ID(N'dbo.message')
              AND name IN (N'source_key', N'change_version')
              AND collation_name <> N'Latin1_General_100_BIN2')
BEGIN
    BEGIN TRANSACTION;
    ALTER TABLE dbo.message DROP CONSTRAINT IF EXISTS message_identity;
    ALTER TABLE dbo.message ALTER COLUMN source_key nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL;
    ALTER TABLE dbo.message ALTER COLUMN change_version nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL;
    ALTER TABLE dbo.message ADD CONSTRAINT message_identity UNIQUE (tenant, schedule_id, source_key, change_version);
    COMMIT TRANSACTION;
END;
GO

IF COL_LENGTH(N'dbo.message', N'detected_at') IS NULL
    ALTER TABLE dbo.message ADD detected_at datetime2(7) NULL;

IF COL_LENGTH(N'dbo.message', N'uncounted_attempts') IS NULL
    ALTER TABLE dbo.message ADD uncounted_attempts int NOT NULL
        CONSTRAINT message_uncounted_attempts_default DEFAULT 0;
GO

-- The sender's claims read message_send_due_by_account (060-provider-accounts.sql).
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.message') AND name = N'message_render_due')
    CREATE INDEX message_render_due ON dbo.message (next_attempt_at) WHERE status = N'render_retry';
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.message') AND name = N'message_in_flight')
    CREATE INDEX message_in_flight ON dbo.message (lease_expires_at) WHERE status = N'sending';
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.message') AND name = N'message_by_recipient')
    CREATE INDEX message_by_recipient ON dbo.message (tenant, recipient, created_at);
GO

-- Events that cannot become a message (not JSON, missing fields, a newer format, an
-- identity no column can hold, a message the database refused): kept, never dropped.
--   raw      the payload's bytes, exactly as they were on the topic;
--   payload  the same as text, when it is text (UTF-8 without NUL characters).
IF OBJECT_ID(N'dbo.rejected_event', N'U') IS NULL
    CREATE TABLE dbo.rejected_event (
        topic       nvarchar(249)  NOT NULL, -- Kafka's longest topic name
        [partition] int            NOT NULL,
        [offset]    bigint         NOT NULL,
        payload     nvarchar(max)  NULL,
        raw         varbinary(max) NULL,
        error       nvarchar(max)  NOT NULL,
        received_at datetime2(7)   NOT NULL CONSTRAINT rejected_event_received_default DEFAULT SYSUTCDATETIME(),
        CONSTRAINT rejected_event_pk PRIMARY KEY (topic, [partition], [offset])
    );
GO

IF COL_LENGTH(N'dbo.rejected_event', N'raw') IS NULL
    ALTER TABLE dbo.rejected_event ADD raw varbinary(max) NULL;
