//! Tera templates, compiled once per template version. The HTML body is autoescaped; the
//! subject, the text body and SMS bodies are not (they are not HTML).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use herald_core::model::Template;
use herald_core::store::MergeRow;
use tera::{Context, Tera};

const SUBJECT: &str = "subject.txt";
const BODY_HTML: &str = "body.html";
const BODY_TEXT: &str = "body.txt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub subject: Option<String>,
    pub body_html: Option<String>,
    pub body_text: String,
}

/// A compiled template and the version (`updated_at`) it was compiled from.
type Compiled = (DateTime<Utc>, Arc<Tera>);

/// Compiled templates kept at most; past it the cache starts afresh.
const MAX_COMPILED: usize = 1024;

#[derive(Default)]
pub struct TemplateCache {
    compiled: Mutex<HashMap<i64, Compiled>>,
}

impl TemplateCache {
    pub fn render(&self, template: &Template, fields: &MergeRow) -> Result<Content, tera::Error> {
        let tera = self.compiled(template)?;
        let context = Context::from_value(serde_json::Value::Object(fields.clone()))?;
        let render = |name: &str| tera.render(name, &context);
        Ok(Content {
            subject: template
                .subject
                .as_ref()
                .map(|_| render(SUBJECT).map(|s| s.trim().to_owned()))
                .transpose()?,
            body_html: template
                .body_html
                .as_ref()
                .map(|_| render(BODY_HTML))
                .transpose()?,
            body_text: render(BODY_TEXT)?.trim().to_owned(),
        })
    }

    fn compiled(&self, template: &Template) -> Result<Arc<Tera>, tera::Error> {
        if let Some((version, tera)) = self.compiled.lock().expect("lock").get(&template.id)
            && *version == template.updated_at
        {
            return Ok(tera.clone());
        }
        let mut tera = Tera::default();
        tera.autoescape_on(vec![".html"]);
        let parts = [
            (SUBJECT, template.subject.as_deref()),
            (BODY_HTML, template.body_html.as_deref()),
            (BODY_TEXT, Some(template.body_text.as_str())),
        ];
        tera.add_raw_templates(
            parts
                .into_iter()
                .filter_map(|(name, source)| source.map(|source| (name, source))),
        )?;
        let tera = Arc::new(tera);
        let mut compiled = self.compiled.lock().expect("lock");
        if compiled.len() >= MAX_COMPILED {
            compiled.clear();
        }
        compiled.insert(template.id, (template.updated_at, tera.clone()));
        Ok(tera)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::telemetry::error_chain;
    use serde_json::json;

    fn template(subject: Option<&str>, html: Option<&str>, text: &str) -> Template {
        Template {
            id: 1,
            locale: "en".into(),
            subject: subject.map(Into::into),
            body_html: html.map(Into::into),
            body_text: text.into(),
            updated_at: Utc::now(),
        }
    }

    fn fields(value: serde_json::Value) -> MergeRow {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let content = TemplateCache::default()
            .render(
                &template(
                    Some("Hi {{ name }}"),
                    Some("<p>{{ name }}</p>"),
                    "Hi {{ name }}",
                ),
                &fields(json!({"name": "<script>alert(1)</script>"})),
            )
            .unwrap();
        assert_eq!(
            content.body_html.as_deref(),
            Some("<p>&lt;script&gt;alert(1)&lt;&#x2F;script&gt;</p>")
        );
        assert_eq!(content.body_text, "Hi <script>alert(1)</script>");
        assert_eq!(
            content.subject.as_deref(),
            Some("Hi <script>alert(1)</script>")
        );
    }

    #[test]
    fn an_sms_template_has_only_a_body() {
        let content = TemplateCache::default()
            .render(
                &template(None, None, "Code {{ code }}\n"),
                &fields(json!({"code": 1234})),
            )
            .unwrap();
        assert_eq!(
            content,
            Content {
                subject: None,
                body_html: None,
                body_text: "Code 1234".into()
            }
        );
    }

    #[test]
    fn a_missing_merge_field_is_an_error_naming_it() {
        let error = TemplateCache::default()
            .render(
                &template(None, None, "Hi {{ nickname }}"),
                &fields(json!({})),
            )
            .unwrap_err();
        assert!(
            error_chain(&error).contains("nickname"),
            "{}",
            error_chain(&error)
        );
    }

    #[test]
    fn a_new_template_version_is_recompiled() {
        let cache = TemplateCache::default();
        let mut v1 = template(None, None, "one");
        assert_eq!(
            cache.render(&v1, &fields(json!({}))).unwrap().body_text,
            "one"
        );
        v1.body_text = "two".into();
        v1.updated_at += chrono::Duration::seconds(1);
        assert_eq!(
            cache.render(&v1, &fields(json!({}))).unwrap().body_text,
            "two"
        );
    }
}
