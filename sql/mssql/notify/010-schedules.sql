-- Schedules and templates: what admins define, in plain SQL (see ../examples/schedules.sql).

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.template', N'U') IS NULL
    CREATE TABLE dbo.template (
        template_id bigint        IDENTITY (1, 1) NOT NULL CONSTRAINT template_pk PRIMARY KEY,
        tenant      nvarchar(128) NOT NULL,
        name        nvarchar(200) NOT NULL,
        locale      nvarchar(35)  NOT NULL CONSTRAINT template_locale_default DEFAULT N'en',
        subject     nvarchar(max) NULL,     -- email only (Tera, not escaped)
        body_html   nvarchar(max) NULL,     -- email only (Tera, HTML-escaped merge values)
        body_text   nvarchar(max) NOT NULL, -- email text/plain part, or the SMS body (Tera, not escaped)
        updated_at  datetime2(7)  NOT NULL CONSTRAINT template_updated_default DEFAULT SYSUTCDATETIME(),
        CONSTRAINT template_name UNIQUE (tenant, name, locale)
    );
GO

IF OBJECT_ID(N'dbo.schedule', N'U') IS NULL
    CREATE TABLE dbo.schedule (
        schedule_id    bigint        IDENTITY (1, 1) NOT NULL CONSTRAINT schedule_pk PRIMARY KEY,
        tenant         nvarchar(128) NOT NULL,
        name           nvarchar(200) NOT NULL,
        channel        nvarchar(8)   NOT NULL CONSTRAINT schedule_channel CHECK (channel IN (N'email', N'sms')),
        -- The watched table (or view) on the source replica: a row whose change column moves
        -- is a change. Names as in the source catalog (sysname: at most 128 characters).
        source_schema  nvarchar(128) NOT NULL CONSTRAINT schedule_source_schema_default DEFAULT N'dbo',
        source_table   nvarchar(128) NOT NULL,
        key_column     nvarchar(128) NOT NULL,
        change_column  nvarchar(128) NOT NULL,
        -- Read-only stored procedure on the source: one parameter (the key) in; one result
        -- set with recipient, recipient_name, locale and merge fields out.
        merge_schema   nvarchar(128) NOT NULL CONSTRAINT schedule_merge_schema_default DEFAULT N'dbo',
        merge_function nvarchar(128) NOT NULL,
        template_name  nvarchar(200) NOT NULL,
        active         bit           NOT NULL CONSTRAINT schedule_active_default DEFAULT 1,
        -- Set by the change detector when the schedule does not match the source catalog.
        error          nvarchar(max) NULL,
        checked_at     datetime2(7)  NULL,
        created_at     datetime2(7)  NOT NULL CONSTRAINT schedule_created_default DEFAULT SYSUTCDATETIME(),
        updated_at     datetime2(7)  NOT NULL CONSTRAINT schedule_updated_default DEFAULT SYSUTCDATETIME(),
        CONSTRAINT schedule_name UNIQUE (tenant, name)
    );
GO

-- One-click unsubscribe (RFC 8058) in the schedule's emails: 'schedule' stops this schedule's
-- emails to the address that clicks it, 'tenant' all the tenant's emails to it; NULL (the
-- default) offers none, for mail a recipient cannot opt out of (a receipt, a password reset).
IF COL_LENGTH(N'dbo.schedule', N'unsubscribe') IS NULL
    ALTER TABLE dbo.schedule ADD unsubscribe nvarchar(8) NULL
        CONSTRAINT schedule_unsubscribe CHECK (unsubscribe IN (N'schedule', N'tenant'));
