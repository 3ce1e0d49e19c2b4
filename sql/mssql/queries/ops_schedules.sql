-- Every schedule for `heraldctl schedules`: its definition's state, where its detection
-- stands (mark and lease), the last operator action on it, and the database's clock to
-- measure ages and leases against.
SELECT s.schedule_id, s.tenant, s.name, s.channel, s.active, s.error, s.checked_at,
       w.hold_back, w.change_value, w.key_value, w.watching_since,
       w.owner, w.lease_expires_at,
       a.action, a.message_id, a.schedule_id AS action_schedule_id, a.from_status,
       a.to_status, a.actor, a.reason, a.acted_at,
       SYSUTCDATETIME() AS read_at
  FROM dbo.schedule AS s
  LEFT JOIN dbo.detector_watermark AS w ON w.schedule_id = s.schedule_id
 OUTER APPLY (
        SELECT TOP (1) o.action, o.message_id, o.schedule_id, o.from_status, o.to_status,
               o.actor, o.reason, o.acted_at
          FROM dbo.operator_action AS o
         WHERE o.schedule_id = s.schedule_id
         ORDER BY o.acted_at DESC, o.action_id DESC
       ) AS a
 ORDER BY s.tenant, s.name;
