-- Template @P2 of tenant @P1 in locale @P3, else 'en', else any.
SELECT TOP (1) template_id, locale, subject, body_html, body_text, updated_at
  FROM dbo.template
 WHERE tenant = @P1 AND name = @P2
 ORDER BY CASE WHEN locale = @P3 THEN 0 WHEN locale = N'en' THEN 1 ELSE 2 END, locale;
