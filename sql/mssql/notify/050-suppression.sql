-- Addresses that must not be contacted (unsubscribed, bounced, complained): by any of the
-- tenant's messages on the channel, or, with schedule_id, by that schedule's (a one-click
-- unsubscribe from it). Matching is
-- case-insensitive whatever the database's collation: address_lower is indexed instead of
-- an expression (SQL Server indexes computed columns, not expressions).

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.suppression', N'U') IS NULL
    CREATE TABLE dbo.suppression (
        tenant        nvarchar(128) NOT NULL,
        channel       nvarchar(8)   NOT NULL CONSTRAINT suppression_channel CHECK (channel IN (N'email', N'sms')),
        address       nvarchar(320) NOT NULL,
        reason        nvarchar(max) NOT NULL,
        created_at    datetime2(7)  NOT NULL CONSTRAINT suppression_created_default DEFAULT SYSUTCDATETIME(),
        address_lower AS LOWER(address) PERSISTED
    );
GO

-- What put the address here, when a provider's event did: `sendgrid:<sg_event_id>`.
IF COL_LENGTH(N'dbo.suppression', N'source') IS NULL
    ALTER TABLE dbo.suppression ADD source nvarchar(300) NULL;
GO

IF COL_LENGTH(N'dbo.suppression', N'schedule_id') IS NULL
    ALTER TABLE dbo.suppression ADD schedule_id bigint NULL;
GO

-- One entry per address and scope (a unique index holds one NULL: the tenant-wide entry).
-- It replaces suppression_address (no scope): stop the senders before applying this.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.suppression') AND name = N'suppression_entry')
    CREATE UNIQUE INDEX suppression_entry ON dbo.suppression (tenant, channel, address_lower, schedule_id);
IF EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.suppression') AND name = N'suppression_address')
    DROP INDEX suppression_address ON dbo.suppression;

-- Entries an operator removed (heraldctl suppression remove), with who and why: the address
-- may be contacted again since.
IF OBJECT_ID(N'dbo.suppression_removed', N'U') IS NULL
    CREATE TABLE dbo.suppression_removed (
        tenant      nvarchar(128) NOT NULL,
        channel     nvarchar(8)   NOT NULL,
        address     nvarchar(320) NOT NULL,
        reason      nvarchar(max) NOT NULL,
        source      nvarchar(300) NULL,
        created_at  datetime2(7)  NOT NULL,
        removed_by  nvarchar(200) NOT NULL,
        removed_why nvarchar(max) NOT NULL,
        removed_at  datetime2(7)  NOT NULL CONSTRAINT suppression_removed_at_default DEFAULT SYSUTCDATETIME()
    );
GO

IF COL_LENGTH(N'dbo.suppression_removed', N'schedule_id') IS NULL
    ALTER TABLE dbo.suppression_removed ADD schedule_id bigint NULL;
