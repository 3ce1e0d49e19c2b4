-- Demo source database: a small CRM whose changes trigger notifications.
-- In production this is the business application's own database, read through a readable
-- secondary (the detector connects with ApplicationIntent=ReadOnly).
--
-- Change columns hold UTC, written with SYSUTCDATETIME(): in poll mode the detector reads
-- each table again from its replica's last commit time (UTC) minus the lookback, so a
-- change column kept in local time would shift that window by the server's UTC offset
-- (changes missed west of Greenwich, rows read again for hours east of it).
-- datetimeoffset columns are compared as instants and need no such care.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF SCHEMA_ID(N'crm') IS NULL
    EXEC (N'CREATE SCHEMA crm');
GO

IF OBJECT_ID(N'crm.contact', N'U') IS NULL
    CREATE TABLE crm.contact (
        contact_id  bigint        IDENTITY (1, 1) NOT NULL CONSTRAINT contact_pk PRIMARY KEY,
        first_name  nvarchar(200) NOT NULL,
        last_name   nvarchar(200) NOT NULL,
        email       nvarchar(320) NULL,
        phone       nvarchar(40)  NULL,
        locale      nvarchar(35)  NOT NULL CONSTRAINT contact_locale_default DEFAULT N'en',
        created_at  datetime2(7)  NOT NULL CONSTRAINT contact_created_default DEFAULT SYSUTCDATETIME(),
        modified_at datetime2(7)  NOT NULL CONSTRAINT contact_modified_default DEFAULT SYSUTCDATETIME()
    );
GO

IF OBJECT_ID(N'crm.appointment', N'U') IS NULL
    CREATE TABLE crm.appointment (
        appointment_id bigint        IDENTITY (1, 1) NOT NULL CONSTRAINT appointment_pk PRIMARY KEY,
        contact_id     bigint        NOT NULL CONSTRAINT appointment_contact
                                     REFERENCES crm.contact (contact_id),
        starts_at      datetime2(7)  NOT NULL, -- UTC
        location       nvarchar(400) NOT NULL,
        created_at     datetime2(7)  NOT NULL CONSTRAINT appointment_created_default DEFAULT SYSUTCDATETIME(),
        modified_at    datetime2(7)  NOT NULL CONSTRAINT appointment_modified_default DEFAULT SYSUTCDATETIME()
    );
GO

-- The detector's poll is an index range scan on (change column, key).
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'crm.contact') AND name = N'contact_created')
    CREATE INDEX contact_created ON crm.contact (created_at, contact_id);
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'crm.contact') AND name = N'contact_modified')
    CREATE INDEX contact_modified ON crm.contact (modified_at, contact_id);
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'crm.appointment') AND name = N'appointment_modified')
    CREATE INDEX appointment_modified ON crm.appointment (modified_at, appointment_id);
GO

-- The application keeps modified_at current; the demo does it with triggers. SQL Server
-- has no BEFORE triggers: an AFTER trigger updates the rows just changed, in the same
-- transaction. Its own UPDATE does not fire it again (RECURSIVE_TRIGGERS is off by default;
-- the nest-level check covers databases where it is on).
CREATE OR ALTER TRIGGER crm.contact_touch ON crm.contact AFTER UPDATE AS
BEGIN
    SET NOCOUNT ON;
    IF TRIGGER_NESTLEVEL(@@PROCID) > 1 RETURN;
    UPDATE c
       SET modified_at = SYSUTCDATETIME()
      FROM crm.contact AS c
      JOIN inserted AS i ON i.contact_id = c.contact_id;
END;
GO

CREATE OR ALTER TRIGGER crm.appointment_touch ON crm.appointment AFTER UPDATE AS
BEGIN
    SET NOCOUNT ON;
    IF TRIGGER_NESTLEVEL(@@PROCID) > 1 RETURN;
    UPDATE a
       SET modified_at = SYSUTCDATETIME()
      FROM crm.appointment AS a
      JOIN inserted AS i ON i.appointment_id = a.appointment_id;
END;
