-- Insert rendered messages ($1: a JSON array of NewMessage); an identity already present
-- (a replayed event, a rescan) inserts nothing. Waiting (for a replica behind the change, or
-- for the retry loop to call a slow merge function) is not a render attempt. A message goes
-- through the provider account its tenant names for its schedule, else for its other
-- schedules, else the channel's default (named as the channel). Returns how many were new.
WITH inserted AS (
    INSERT INTO message (tenant, schedule_id, source_key, change_version, channel, status,
                         recipient, recipient_name, locale, subject, body_html, body_text,
                         last_error, render_attempts, next_attempt_at, event_partition, event_offset,
                         detected_at, account)
    SELECT m.tenant, m.schedule_id, m.source_key, m.change_version, m.channel, m.status,
           m.recipient, m.recipient_name, m.locale, m.subject, m.body_html, m.body_text,
           m.error, CASE WHEN m.waiting THEN 0 ELSE 1 END,
           now() + make_interval(secs => m.retry_in_secs), m.event_partition,
           m.event_offset, m.detected_at,
           coalesce((SELECT a.account
                       FROM tenant_account a
                      WHERE a.tenant = m.tenant
                        AND a.channel = m.channel
                        AND coalesce(a.schedule_id, m.schedule_id) = m.schedule_id
                      ORDER BY a.schedule_id NULLS LAST
                      LIMIT 1),
                    m.channel)
      FROM jsonb_to_recordset($1::text::jsonb) AS m (
               tenant text, schedule_id bigint, source_key text, change_version text,
               channel text, status text, recipient text, recipient_name text, locale text,
               subject text, body_html text, body_text text, error text,
               retry_in_secs float8, event_partition integer, event_offset bigint,
               detected_at timestamptz, waiting boolean)
        ON CONFLICT ON CONSTRAINT message_identity DO NOTHING
    RETURNING 1
)
SELECT count(*) AS inserted FROM inserted
