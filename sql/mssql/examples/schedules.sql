-- Defining notifications on SQL Server: plain INSERTs into the notification database.
-- The change detector picks up new, changed and deactivated schedules without a restart;
-- a schedule that does not match the source (unknown table, column or merge procedure) gets
-- its `error` column set and is skipped, while the others keep running.
-- Each statement inserts only what is missing, so the file can be run again.

-- 1. Templates are Tera (https://keats.github.io/tera/). Merge fields are the columns the
--    merge procedure returns. body_html is HTML-escaped; subject and body_text are not.
INSERT INTO dbo.template (tenant, name, locale, subject, body_html, body_text)
SELECT v.tenant, v.name, v.locale, v.subject, v.body_html, v.body_text
  FROM (VALUES
           (N'acme', N'welcome', N'en',
            N'Welcome, {{ first_name }}!',
            N'<p>Hello {{ first_name }} {{ last_name }},</p><p>welcome to Acme.</p>',
            N'Hello {{ first_name }} {{ last_name }}, welcome to Acme.'),
           (N'acme', N'welcome', N'fr',
            N'Bienvenue, {{ first_name }} !',
            N'<p>Bonjour {{ first_name }} {{ last_name }},</p><p>bienvenue chez Acme.</p>',
            N'Bonjour {{ first_name }} {{ last_name }}, bienvenue chez Acme.')
       ) AS v (tenant, name, locale, subject, body_html, body_text)
 WHERE NOT EXISTS (SELECT 1 FROM dbo.template AS t
                    WHERE t.tenant = v.tenant AND t.name = v.name AND t.locale = v.locale);

-- An SMS template has only body_text.
INSERT INTO dbo.template (tenant, name, body_text)
SELECT N'acme', N'appointment-reminder',
       N'Hi {{ first_name }}, your appointment is at {{ starts_at }}, {{ location }}.'
 WHERE NOT EXISTS (SELECT 1 FROM dbo.template AS t
                    WHERE t.tenant = N'acme' AND t.name = N'appointment-reminder' AND t.locale = N'en');

-- 2. Schedules: "when a row of <table> is inserted (created_at) or changed (modified_at),
--    send <channel> to whoever <merge_function> names, with <template>". On SQL Server,
--    merge_function names a stored procedure taking one parameter, the row's key.
--    unsubscribe: the emails carry a one-click unsubscribe link (RFC 8058) that stops this
--    schedule's emails to the address ('schedule') or all the tenant's ('tenant'); NULL, none.
INSERT INTO dbo.schedule (tenant, name, channel, source_schema, source_table, key_column,
                          change_column, merge_schema, merge_function, template_name,
                          unsubscribe)
SELECT v.tenant, v.name, v.channel, v.source_schema, v.source_table, v.key_column,
       v.change_column, v.merge_schema, v.merge_function, v.template_name, v.unsubscribe
  FROM (VALUES
           (N'acme', N'welcome-email', N'email', N'crm', N'contact', N'contact_id',
            N'created_at', N'crm', N'welcome_email', N'welcome', N'schedule'),
           (N'acme', N'appointment-sms', N'sms', N'crm', N'appointment', N'appointment_id',
            N'modified_at', N'crm', N'appointment_sms', N'appointment-reminder', NULL)
       ) AS v (tenant, name, channel, source_schema, source_table, key_column,
               change_column, merge_schema, merge_function, template_name, unsubscribe)
 WHERE NOT EXISTS (SELECT 1 FROM dbo.schedule AS s WHERE s.tenant = v.tenant AND s.name = v.name);

-- 3. Pause a schedule (its table is no longer polled), and resume it. Resuming carries on
--    from where it stopped, so changes made while paused are notified; to skip them, delete
--    the schedule's detector_watermark row before resuming.
--    UPDATE dbo.schedule SET active = 0, updated_at = SYSUTCDATETIME() WHERE tenant = N'acme' AND name = N'welcome-email';
--    UPDATE dbo.schedule SET active = 1, updated_at = SYSUTCDATETIME() WHERE tenant = N'acme' AND name = N'welcome-email';

-- 4. Find schedules the detector rejected, and why:
--    SELECT tenant, name, error, checked_at FROM dbo.schedule WHERE error IS NOT NULL;
