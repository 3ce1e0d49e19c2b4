-- Merge procedures: read-only, one parameter (the key) in, one result set of at most one
-- row out. The columns recipient, recipient_name and locale address the message; every
-- other column is a merge field available to the template by its name, so every column
-- needs a name. Values reach the template as JSON: text as text, numbers as numbers,
-- dates in ISO 8601; format anything meant for people here, as starts_at is.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

CREATE OR ALTER PROCEDURE crm.welcome_email @contact_id bigint
AS
BEGIN
    SET NOCOUNT ON;
    SELECT c.email                            AS recipient,
           c.first_name + N' ' + c.last_name  AS recipient_name,
           c.locale,
           c.first_name,
           c.last_name
      FROM crm.contact AS c
     WHERE c.contact_id = @contact_id;
END;
GO

CREATE OR ALTER PROCEDURE crm.appointment_sms @appointment_id bigint
AS
BEGIN
    SET NOCOUNT ON;
    -- Style 120 is 'yyyy-mm-dd hh:mi:ss'; its first 16 characters are 'yyyy-mm-dd hh:mi'.
    SELECT c.phone                                      AS recipient,
           c.first_name + N' ' + c.last_name            AS recipient_name,
           c.locale,
           c.first_name,
           CONVERT(nchar(16), a.starts_at, 120) + N' UTC' AS starts_at,
           a.location
      FROM crm.appointment AS a
      JOIN crm.contact AS c ON c.contact_id = a.contact_id
     WHERE a.appointment_id = @appointment_id;
END;
