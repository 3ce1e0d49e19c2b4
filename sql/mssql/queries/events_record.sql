-- Records provider events (@P1: a JSON array, one object per event: provider, account,
-- event_id, message_id, provider_message_id, event, reason, occurred_at in ISO 8601, payload,
-- address, suppress), each once: an event already recorded is left as it is. An event
-- without our message id is matched through the provider's id of the message, as an earlier
-- event named it. An event naming a message that does not exist, or that is not its
-- account's (the account whose signature it carries), is kept without it. A
-- new event marked `suppress` (a hard bounce, a complaint, an unsubscribe) about its
-- message's own recipient puts the address on the message's tenant's suppression list for
-- that channel (all its schedules), with the event as reason and source (messages in doubt are settled by
-- send_settle_by_events.sql). One transaction; the inserts take UPDLOCK, HOLDLOCK on the keys
-- they check, so two posts of the same event cannot both record it.
-- Returns how many events were new and how many addresses they suppressed.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @events TABLE (
    provider            nvarchar(16)  NOT NULL,
    account             nvarchar(128) NOT NULL,
    event_id            nvarchar(200) NOT NULL,
    message_id          bigint        NULL,
    provider_message_id nvarchar(200) NULL,
    event               nvarchar(32)  NOT NULL,
    reason              nvarchar(max) NULL,
    occurred_at         datetime2(7)  NULL,
    payload             nvarchar(max) NOT NULL,
    address             nvarchar(320) NULL,
    suppress            bit           NOT NULL,
    PRIMARY KEY (provider, event_id)
);
DECLARE @recorded TABLE (provider nvarchar(16) NOT NULL, event_id nvarchar(200) NOT NULL,
                         message_id bigint NULL, provider_message_id nvarchar(200) NULL);
DECLARE @suppressed TABLE (tenant nvarchar(128) NOT NULL);

WITH e AS (
    SELECT provider, account, event_id, message_id, provider_message_id, event, reason,
           CAST(SWITCHOFFSET(occurred_at, '+00:00') AS datetime2(7)) AS occurred_at, payload,
           address, COALESCE(suppress, 0) AS suppress,
           ROW_NUMBER() OVER (PARTITION BY provider, event_id ORDER BY (SELECT NULL)) AS copy
      FROM OPENJSON(@P1) WITH (
               provider            nvarchar(16)      '$.provider',
               account             nvarchar(128)     '$.account',
               event_id            nvarchar(200)     '$.event_id',
               message_id          bigint            '$.message_id',
               provider_message_id nvarchar(200)     '$.provider_message_id',
               event               nvarchar(32)      '$.event',
               reason              nvarchar(max)     '$.reason',
               occurred_at         datetimeoffset(7) '$.occurred_at',
               payload             nvarchar(max)     '$.payload',
               address             nvarchar(320)     '$.address',
               suppress            bit               '$.suppress')
)
INSERT INTO @events (provider, account, event_id, message_id, provider_message_id, event,
                     reason, occurred_at, payload, address, suppress)
SELECT provider, account, event_id, message_id, provider_message_id, event, reason, occurred_at,
       payload, address, suppress
  FROM e
 WHERE copy = 1;

INSERT INTO dbo.delivery_event (provider, event_id, message_id, provider_message_id, event,
                                reason, occurred_at, payload)
OUTPUT inserted.provider, inserted.event_id, inserted.message_id, inserted.provider_message_id
  INTO @recorded (provider, event_id, message_id, provider_message_id)
SELECT e.provider, e.event_id, m.message_id, e.provider_message_id, e.event, e.reason,
       e.occurred_at, e.payload
  FROM @events AS e
  LEFT JOIN dbo.message AS m
         ON m.message_id = COALESCE(e.message_id,
                                    (SELECT TOP (1) d.message_id
                                       FROM dbo.delivery_event AS d
                                      WHERE d.provider = e.provider
                                        AND d.provider_message_id = e.provider_message_id
                                        AND d.message_id IS NOT NULL))
        AND COALESCE(m.account, m.channel) = e.account
 WHERE NOT EXISTS (SELECT 1
                     FROM dbo.delivery_event AS d WITH (UPDLOCK, HOLDLOCK)
                    WHERE d.provider = e.provider AND d.event_id = e.event_id);

WITH candidates AS (
    SELECT m.tenant, m.channel, e.address,
           CONCAT(e.event, CASE WHEN e.reason IS NULL THEN N'' ELSE CONCAT(N': ', e.reason) END)
               AS reason,
           CONCAT(e.provider, N':', e.event_id) AS source,
           ROW_NUMBER() OVER (PARTITION BY m.tenant, m.channel, LOWER(e.address)
                              ORDER BY e.occurred_at) AS copy
      FROM @recorded AS r
      JOIN @events AS e ON e.provider = r.provider AND e.event_id = r.event_id
      JOIN dbo.message AS m ON m.message_id = r.message_id
     WHERE e.suppress = 1 AND LOWER(e.address) = LOWER(m.recipient)
)
INSERT INTO dbo.suppression (tenant, channel, address, reason, source)
OUTPUT inserted.tenant INTO @suppressed (tenant)
SELECT c.tenant, c.channel, c.address, c.reason, c.source
  FROM candidates AS c
 WHERE c.copy = 1
   AND NOT EXISTS (SELECT 1
                     FROM dbo.suppression AS s WITH (UPDLOCK, HOLDLOCK)
                    WHERE s.tenant = c.tenant AND s.channel = c.channel
                      AND s.address_lower = LOWER(c.address) AND s.schedule_id IS NULL);

COMMIT TRANSACTION;

SELECT (SELECT CAST(COUNT(*) AS bigint) FROM @recorded) AS recorded,
       (SELECT CAST(COUNT(*) AS bigint) FROM @suppressed) AS suppressed;
