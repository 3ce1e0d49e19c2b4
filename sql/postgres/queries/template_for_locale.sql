-- Template $2 of tenant $1 in locale $3, else 'en', else any.
SELECT template_id, locale, subject, body_html, body_text, updated_at
  FROM template
 WHERE tenant = $1 AND name = $2
 ORDER BY (locale = $3) DESC, (locale = 'en') DESC, locale
 LIMIT 1
