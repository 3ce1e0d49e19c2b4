-- Defining notifications: plain INSERTs into the notification database.
-- The change detector picks up new, changed and deactivated schedules without a restart;
-- a schedule that does not match the source (unknown table, column or merge function) gets
-- its `error` column set and is skipped, while the others keep running.

-- 1. Templates are Tera (https://keats.github.io/tera/). Merge fields are the columns the
--    merge function returns. body_html is HTML-escaped; subject and body_text are not.
INSERT INTO template (tenant, name, locale, subject, body_html, body_text) VALUES
    ('acme', 'welcome', 'en',
     'Welcome, {{ first_name }}!',
     '<p>Hello {{ first_name }} {{ last_name }},</p><p>welcome to Acme.</p>',
     'Hello {{ first_name }} {{ last_name }}, welcome to Acme.'),
    ('acme', 'welcome', 'fr',
     'Bienvenue, {{ first_name }} !',
     '<p>Bonjour {{ first_name }} {{ last_name }},</p><p>bienvenue chez Acme.</p>',
     'Bonjour {{ first_name }} {{ last_name }}, bienvenue chez Acme.')
ON CONFLICT (tenant, name, locale) DO NOTHING;

-- An SMS template has only body_text.
INSERT INTO template (tenant, name, body_text) VALUES
    ('acme', 'appointment-reminder',
     'Hi {{ first_name }}, your appointment is at {{ starts_at }}, {{ location }}.')
ON CONFLICT (tenant, name, locale) DO NOTHING;

-- 2. Schedules: "when a row of <table> is inserted (created_at) or changed (modified_at),
--    send <channel> to whoever <merge_function> names, with <template>".
--    unsubscribe: the emails carry a one-click unsubscribe link (RFC 8058) that stops this
--    schedule's emails to the address ('schedule') or all the tenant's ('tenant'); NULL, none.
INSERT INTO schedule (tenant, name, channel, source_schema, source_table, key_column,
                      change_column, merge_schema, merge_function, template_name,
                      unsubscribe) VALUES
    ('acme', 'welcome-email', 'email', 'crm', 'contact', 'contact_id',
     'created_at', 'crm', 'welcome_email', 'welcome', 'schedule'),
    ('acme', 'appointment-sms', 'sms', 'crm', 'appointment', 'appointment_id',
     'modified_at', 'crm', 'appointment_sms', 'appointment-reminder', NULL)
ON CONFLICT (tenant, name) DO NOTHING;

-- 3. Pause a schedule (its table is no longer polled), and resume it. Resuming carries on
--    from where it stopped, so changes made while paused are notified; to skip them, delete
--    the schedule's detector_watermark row before resuming.
--    UPDATE schedule SET active = false, updated_at = now() WHERE tenant = 'acme' AND name = 'welcome-email';
--    UPDATE schedule SET active = true,  updated_at = now() WHERE tenant = 'acme' AND name = 'welcome-email';

-- 4. Find schedules the detector rejected, and why:
--    SELECT tenant, name, error, checked_at FROM schedule WHERE error IS NOT NULL;
