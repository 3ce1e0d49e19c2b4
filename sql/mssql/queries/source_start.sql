-- Template: a new schedule's starting point, replica now - @P1 milliseconds, in the change
-- column's type, as text.
SELECT CONVERT(nvarchar(40),
               CAST(DATEADD(millisecond, -@P1, SYSUTCDATETIME()) AS {change_type}),
               126) AS change_value;
