-- Merge functions: read-only, one key in, at most one row out. The columns recipient,
-- recipient_name and locale address the message; every other column is a merge field
-- available to the template by its name.

CREATE OR REPLACE FUNCTION crm.welcome_email(p_contact_id bigint)
RETURNS TABLE (recipient text, recipient_name text, locale text, first_name text, last_name text)
LANGUAGE sql STABLE AS $$
    SELECT c.email, c.first_name || ' ' || c.last_name, c.locale, c.first_name, c.last_name
      FROM crm.contact c
     WHERE c.contact_id = p_contact_id
$$;

CREATE OR REPLACE FUNCTION crm.appointment_sms(p_appointment_id bigint)
RETURNS TABLE (recipient text, recipient_name text, locale text, first_name text,
               starts_at text, location text)
LANGUAGE sql STABLE AS $$
    SELECT c.phone, c.first_name || ' ' || c.last_name, c.locale, c.first_name,
           to_char(a.starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'), a.location
      FROM crm.appointment a
      JOIN crm.contact c USING (contact_id)
     WHERE a.appointment_id = p_appointment_id
$$;
