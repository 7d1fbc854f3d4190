//! Payload templates: Jinja2-style sources compiled once, rendered per delivery.
//!
//! A [`Template`] is compiled when an endpoint is registered, so a syntax error is refused
//! there, with its line. Rendering is strict and bounded:
//! - an undefined variable is an error naming it (Jinja2's `StrictUndefined`), never an
//!   empty string; `is defined` and the `default` filter still work;
//! - every render gets [`TEMPLATE_FUEL`] units of fuel (about one per instruction and one per
//!   64 bytes of data), so a runaway loop stops with an error instead of stalling a worker;
//! - the source may be at most [`MAX_TEMPLATE_BYTES`] and the output at most
//!   [`MAX_RENDERED_BYTES`].
//!
//! Payloads are JSON or text, not HTML, so auto-escaping is off: `{{ name }}` writes the
//! value as is, and the `tojson` filter writes any value as JSON (`{"x": {{ x | tojson }}}`).
//! `range` is lazy and bounded by the fuel: a range longer than the fuel left is refused.
//!
//! A known limit of minijinja 3.1's fuel: a list is charged by its own length, not by what
//! it nests, and turning a value into text is charged only once the text is made. A template
//! that repeats lists of lists (`[[1] * 1000] * 1000`) and prints them spends work and memory
//! in proportion to the nested size before the fuel stops it (about 0.8 s for 10 million
//! leaves). Ordinary payload templates never come near this.
//!
//! Each `Template` owns its own minijinja `Environment` holding the one compiled template,
//! behind an `Arc`: cloning is cheap, rendering never recompiles, and templates of different
//! tenants share nothing. This module never performs I/O and never reads a clock.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Serde, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

use crate::error::WebhookError;

/// The fuel each render may use: about 50,000 instructions, or 3 MB of data built.
pub const TEMPLATE_FUEL: u64 = 50_000;
/// The longest template source accepted, in bytes (64 KiB).
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// The longest rendered payload accepted, in bytes (256 KiB).
pub const MAX_RENDERED_BYTES: usize = 256 * 1024;

/// The name the one template has inside its environment.
const NAME: &str = "payload";

/// A compiled payload template. Cheap to clone; `Send` and `Sync`.
///
/// Two templates are equal when their sources are.
#[derive(Clone)]
pub struct Template {
    inner: Arc<Inner>,
}

struct Inner {
    env: Environment<'static>,
    source: String,
}

impl Template {
    /// Compiles `source`.
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidTemplate`] if the source is longer than [`MAX_TEMPLATE_BYTES`]
    /// or does not compile; a syntax error carries its 1-based line.
    pub fn new(source: &str) -> Result<Self, WebhookError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(WebhookError::InvalidTemplate {
                line: None,
                reason: format!(
                    "the template is {} bytes long, more than the {MAX_TEMPLATE_BYTES} allowed",
                    source.len()
                ),
            });
        }
        let env = environment(source, false).map_err(|e| WebhookError::InvalidTemplate {
            line: e.line(),
            reason: describe(&e),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                env,
                source: source.to_owned(),
            }),
        })
    }

    /// The template's source, as given.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Renders the template with `context`, a JSON object whose keys are the variables.
    ///
    /// # Errors
    ///
    /// [`WebhookError::Render`] if the context is not an object, a variable is undefined
    /// (the reason names it), the fuel runs out, a filter or operation fails, or the output
    /// is longer than [`MAX_RENDERED_BYTES`]. The line is the template's, when known.
    pub fn render(&self, context: &serde_json::Value) -> Result<String, WebhookError> {
        if !context.is_object() {
            return Err(WebhookError::Render {
                line: None,
                reason: format!(
                    "the context must be a JSON object, not {}",
                    json_kind(context)
                ),
            });
        }
        self.render_value(&Value::from(Serde(context)))
    }

    /// Renders the template with a context made of template values (a map whose keys are
    /// the variables): what a binding converting its own values uses, skipping JSON.
    ///
    /// # Errors
    ///
    /// Those of [`render`](Self::render).
    pub fn render_value(&self, context: &Value) -> Result<String, WebhookError> {
        if context.kind() != ValueKind::Map {
            return Err(WebhookError::Render {
                line: None,
                reason: format!("the context must be a map, not {}", context.kind()),
            });
        }
        let output = self
            .render_with(&self.inner.env, context)
            .map_err(|e| self.render_error(&e, context))?;
        if output.len() > MAX_RENDERED_BYTES {
            return Err(WebhookError::Render {
                line: None,
                reason: format!(
                    "the rendered payload is {} bytes long, more than the {MAX_RENDERED_BYTES} allowed",
                    output.len()
                ),
            });
        }
        Ok(output)
    }

    /// Renders the template (as [`render`](Self::render)) and parses the output as JSON, for
    /// endpoints that expect JSON.
    ///
    /// # Errors
    ///
    /// Those of [`render`](Self::render), and [`WebhookError::Render`] with the parser's
    /// message (which gives the line and column in the rendered output) if the output is
    /// not valid JSON.
    pub fn render_json(
        &self,
        context: &serde_json::Value,
    ) -> Result<serde_json::Value, WebhookError> {
        parse_rendered(&self.render(context)?)
    }

    /// Renders with template values (as [`render_value`](Self::render_value)) and parses
    /// the output as JSON (as [`render_json`](Self::render_json)).
    ///
    /// # Errors
    ///
    /// Those of [`render_json`](Self::render_json).
    pub fn render_value_json(&self, context: &Value) -> Result<serde_json::Value, WebhookError> {
        parse_rendered(&self.render_value(context)?)
    }

    fn render_with(&self, env: &Environment<'static>, context: &Value) -> Result<String, Error> {
        env.get_template(NAME)?.render(context)
    }

    /// Turns a render error into ours. An undefined-value error is rendered again in debug
    /// mode, which tracks where undefined values come from and so can name the variable;
    /// the fast path runs without that bookkeeping.
    fn render_error(&self, error: &Error, context: &Value) -> WebhookError {
        let named = if error.kind() == ErrorKind::UndefinedError {
            environment(&self.inner.source, true)
                .and_then(|env| self.render_with(&env, context))
                .err()
                .filter(|e| e.kind() == ErrorKind::UndefinedError)
        } else {
            None
        };
        let error = named.as_ref().unwrap_or(error);
        WebhookError::Render {
            line: error.line(),
            reason: describe(error),
        }
    }
}

/// An environment holding `source` compiled as [`NAME`], with this module's settings.
fn environment(source: &str, debug: bool) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_debug(debug);
    env.add_function("range", lazy_range);
    env.add_template_owned(NAME, source.to_owned())?;
    Ok(env)
}

/// Jinja2's `range(stop)` / `range(start, stop[, step])`, made lazily as a loop asks.
///
/// minijinja's own `range` refuses more than 100,000 items, which would stop a runaway
/// `range(1000000)` loop before the fuel could. This one is bounded by the fuel instead:
/// every item a loop or filter visits costs fuel, so a range longer than the fuel left can
/// never be used up, and asking for one is an out-of-fuel error at once.
fn lazy_range(
    state: &State<'_, '_>,
    lower: i64,
    upper: Option<i64>,
    step: Option<i64>,
) -> Result<Value, Error> {
    let (start, stop) = match upper {
        Some(upper) => (lower, upper),
        None => (0, lower),
    };
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "cannot create range with step of 0",
        ));
    }
    // Items are start + i * step for i in 0..len, computed in i128 so nothing overflows.
    let (start, stop, step) = (i128::from(start), i128::from(stop), i128::from(step));
    let len = if step > 0 && stop > start {
        (stop - start + step - 1) / step
    } else if step < 0 && start > stop {
        (start - stop - step - 1) / -step
    } else {
        0
    };
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    if let Some((_, remaining)) = state.fuel_levels()
        && len > remaining
    {
        return Err(Error::new(
            ErrorKind::OutOfFuel,
            format!("a range of {len} items is longer than the {remaining} fuel left"),
        ));
    }
    Ok(Value::make_iterable(move || {
        (0..len).map(move |i| {
            // Every item lies between start and stop, so it fits in an i64.
            let item = start + i128::from(i) * step;
            Value::from(i64::try_from(item).unwrap_or_default())
        })
    }))
}

/// The reason text of a minijinja error: its kind and detail, without the template name.
fn describe(error: &Error) -> String {
    let reason = match (error.kind(), error.detail()) {
        (ErrorKind::OutOfFuel, detail) => format!(
            "the template ran out of fuel (its budget is {TEMPLATE_FUEL} steps per render); \
             it loops too long or builds too much{}",
            detail.map(|d| format!(": {d}")).unwrap_or_default()
        ),
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    match std::error::Error::source(error) {
        Some(source) => format!("{reason}: {source}"),
        None => reason,
    }
}

/// Parses a rendered payload as JSON.
fn parse_rendered(output: &str) -> Result<serde_json::Value, WebhookError> {
    serde_json::from_str(output).map_err(|e| WebhookError::Render {
        line: None,
        reason: format!("the rendered payload is not valid JSON: {e}"),
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("source", &self.inner.source)
            .finish()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.inner.source == other.inner.source
    }
}

impl Eq for Template {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> serde_json::Value {
        json!({
            "deployment_id": "dep-1",
            "tenant_id": "acme",
            "service_name": "api",
            "old_state": "in_progress",
            "new_state": "failed",
            "timestamp": "2026-03-01T12:00:00Z",
            "duration_seconds": 12.5,
            "links": {"logs": "https://logs.example/dep-1"},
            "tags": ["a", "b"],
        })
    }

    fn render_err(source: &str, context: &serde_json::Value) -> (Option<usize>, String) {
        let template = Template::new(source).expect("compiles");
        match template.render(context) {
            Err(WebhookError::Render { line, reason }) => (line, reason),
            other => panic!("expected a render error, got {other:?}"),
        }
    }

    #[test]
    fn renders_variables_without_escaping() {
        let template = Template::new(
            "{{ service_name }} went {{ old_state }} -> {{ new_state }} <&> {{ links.logs }}",
        )
        .expect("compiles");
        assert_eq!(
            template.render(&event()).expect("renders"),
            "api went in_progress -> failed <&> https://logs.example/dep-1"
        );
        assert_eq!(
            template.source(),
            "{{ service_name }} went {{ old_state }} -> {{ new_state }} <&> {{ links.logs }}"
        );
    }

    #[test]
    fn tojson_and_render_json() {
        let template = Template::new(
            r#"{"text": {{ ("Deploy " ~ service_name ~ " is " ~ new_state) | tojson }},
                "tags": {{ tags | tojson }}, "took": {{ duration_seconds }},
                "links": {{ links | tojson }}}"#,
        )
        .expect("compiles");
        assert_eq!(
            template.render_json(&event()).expect("renders JSON"),
            json!({
                "text": "Deploy api is failed",
                "tags": ["a", "b"],
                "took": 12.5,
                "links": {"logs": "https://logs.example/dep-1"},
            })
        );
        // Quotes and HTML characters in values stay valid JSON through tojson.
        let quoted = json!({"service_name": "a \"quoted\" <name>\n", "new_state": "x",
                            "tags": [], "duration_seconds": 1, "links": {}});
        let value = template.render_json(&quoted).expect("renders JSON");
        assert_eq!(value["text"], "Deploy a \"quoted\" <name>\n is x");
    }

    #[test]
    fn syntax_error_reports_line_3() {
        let source = "{\n  \"a\": {{ service_name }},\n  \"b\": {{ new_state }\n}";
        match Template::new(source) {
            Err(WebhookError::InvalidTemplate { line, reason }) => {
                assert_eq!(line, Some(3), "{reason}");
                assert!(reason.contains("syntax error"), "{reason}");
                assert!(!reason.contains("payload"), "{reason}");
            }
            other => panic!("expected InvalidTemplate, got {other:?}"),
        }
        for bad in [
            "{% for x in tags %}",
            "{% endfor %}",
            "{{ }}",
            "{% if %}{% endif %}",
            "{{ a b }}",
        ] {
            assert!(
                matches!(
                    Template::new(bad),
                    Err(WebhookError::InvalidTemplate { line: Some(1), .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn oversized_source_is_refused() {
        let source = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        match Template::new(&source) {
            Err(WebhookError::InvalidTemplate { line: None, reason }) => {
                assert!(reason.contains("65537 bytes"), "{reason}");
            }
            other => panic!("expected InvalidTemplate, got {other:?}"),
        }
        assert!(Template::new(&"x".repeat(MAX_TEMPLATE_BYTES)).is_ok());
    }

    #[test]
    fn undefined_variables_are_errors_naming_them() {
        let (line, reason) = render_err("ok\n{{ deploymentid }}", &event());
        assert_eq!(line, Some(2));
        assert!(reason.contains("deploymentid"), "{reason}");
        assert!(reason.contains("undefined"), "{reason}");

        let (_, reason) = render_err("{{ links.metrics }}", &event());
        assert!(reason.contains("links.metrics"), "{reason}");

        let (_, reason) = render_err("{% if nope %}x{% endif %}", &event());
        assert!(reason.contains("nope"), "{reason}");

        // Tests for definedness and defaults still work under strict undefined.
        let template = Template::new(
            "{% if nope is defined %}yes{% else %}no{% endif %} {{ nope | default('dflt') }}",
        )
        .expect("compiles");
        assert_eq!(template.render(&event()).expect("renders"), "no dflt");
    }

    #[test]
    fn runaway_loop_runs_out_of_fuel() {
        // A range longer than the fuel left is refused at once...
        let (line, reason) = render_err(
            "\n{% for i in range(1000000) %}{{ i }}{% endfor %}",
            &event(),
        );
        assert_eq!(line, Some(2));
        assert!(reason.contains("ran out of fuel"), "{reason}");
        assert!(reason.contains("range of 1000000 items"), "{reason}");
        // ...and a loop within it whose body costs more runs until the fuel is gone.
        let (_, reason) = render_err(
            "{% for i in range(40000) %}{{ i }}{{ i }}{% endfor %}",
            &event(),
        );
        assert!(reason.contains("ran out of fuel"), "{reason}");
        assert!(!reason.contains("range of"), "{reason}");
        let (_, reason) = render_err(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            &event(),
        );
        assert!(reason.contains("ran out of fuel"), "{reason}");
        let (_, reason) = render_err("{{ range(1000000000000) | list | length }}", &event());
        assert!(reason.contains("ran out of fuel"), "{reason}");
        let (_, reason) = render_err(
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            &event(),
        );
        assert!(
            reason.contains("ran out of fuel") || reason.contains("recursion"),
            "{reason}"
        );
        // Ordinary loops are well within budget.
        let template =
            Template::new("{% for i in range(1000) %}{{ i }},{% endfor %}").expect("compiles");
        assert!(
            template
                .render(&event())
                .expect("renders")
                .starts_with("0,1,2,")
        );
    }

    #[test]
    fn range_matches_jinja2() {
        let template = Template::new(
            "{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }} \
             {{ range(0, 10, 4) | list }} {{ range(-2) | list }} {{ range(5, 1) | list }} \
             {% for i in range(2) %}{{ loop.length }}{% endfor %}",
        )
        .expect("compiles");
        assert_eq!(
            template.render(&event()).expect("renders"),
            "[0, 1, 2] [1, 2, 3] [10, 7, 4, 1] [0, 4, 8] [] [] 22"
        );
        let (_, reason) = render_err("{{ range(1, 2, 0) | list }}", &event());
        assert!(reason.contains("step of 0"), "{reason}");
        let template =
            Template::new("{{ range(9223372036854775806, 9223372036854775807) | list }}")
                .expect("compiles");
        assert_eq!(
            template.render(&event()).expect("renders"),
            "[9223372036854775806]"
        );
    }

    #[test]
    fn output_size_is_bounded() {
        let (line, reason) = render_err("{{ 'x' * 300000 }}", &event());
        assert_eq!(line, None);
        assert!(reason.contains("262144"), "{reason}");
        let template = Template::new("{{ 'x' * 262144 }}").expect("compiles");
        assert_eq!(
            template.render(&event()).expect("renders").len(),
            MAX_RENDERED_BYTES
        );
    }

    #[test]
    fn render_json_rejects_invalid_json() {
        let template = Template::new(r#"{"a": }"#).expect("compiles");
        match template.render_json(&event()) {
            Err(WebhookError::Render { reason, .. }) => {
                assert!(reason.contains("not valid JSON"), "{reason}");
                assert!(reason.contains("line 1 column"), "{reason}");
            }
            other => panic!("expected a render error, got {other:?}"),
        }
        // A plain string value unquoted is not JSON either.
        let template = Template::new(r#"{"a": {{ service_name }}}"#).expect("compiles");
        assert!(template.render_json(&event()).is_err());
        assert_eq!(template.render(&event()).expect("renders"), r#"{"a": api}"#);
    }

    #[test]
    fn context_must_be_an_object() {
        let template = Template::new("static").expect("compiles");
        for context in [json!(null), json!([1]), json!("x"), json!(1), json!(true)] {
            match template.render(&context) {
                Err(WebhookError::Render { reason, .. }) => {
                    assert!(reason.contains("must be a JSON object"), "{reason}");
                }
                other => panic!("expected a render error, got {other:?}"),
            }
        }
        assert_eq!(template.render(&json!({})).expect("renders"), "static");
    }

    #[test]
    fn runtime_errors_carry_their_line() {
        let (line, reason) = render_err("a\nb\n{{ service_name | no_such_filter }}", &event());
        assert_eq!(line, Some(3));
        assert!(reason.contains("no_such_filter"), "{reason}");
        let (line, _) = render_err("\n{{ 1 / 0 }}", &event());
        assert_eq!(line, Some(2));
    }

    #[test]
    fn templates_are_shareable_and_compare_by_source() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Template>();
        let a = Template::new("{{ tenant_id }}").expect("compiles");
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, Template::new("{{ tenant_id }} ").expect("compiles"));
        let handle = std::thread::spawn(move || b.render(&event()).expect("renders"));
        assert_eq!(handle.join().expect("thread ran"), "acme");
        assert!(format!("{a:?}").contains("tenant_id"));
    }

    #[test]
    fn trailing_newline_is_dropped_like_jinja2() {
        let template = Template::new("{{ tenant_id }}\n").expect("compiles");
        assert_eq!(template.render(&event()).expect("renders"), "acme");
    }
}
