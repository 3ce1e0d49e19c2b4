-- The provider accounts besides the default ones (../notify/060-provider-accounts.sql).
SELECT name, channel, api_key_env, from_email, from_name, event_verification_key,
       account_sid, auth_token_env, from_number, messaging_service_sid
  FROM dbo.provider_account
 ORDER BY name;
