//! Renders the repository's `fixtures/` templates and, under the name prefix `kind/`, the `kind/`
//! environment's templates (all embedded at build time). Rendering is strict: a template using
//! an undefined variable is an error, never an empty string.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("rendering fixture {name}: {source:#}")]
pub struct FixtureError {
    pub name: String,
    #[source]
    pub source: minijinja::Error,
}

/// The template source of an embedded fixture.
pub fn source(name: &str) -> Option<&'static str> {
    let (table, name) = match name.strip_prefix("kind/") {
        Some(kind_name) => (crate::embedded::KIND, kind_name),
        None => (crate::embedded::FIXTURES, name),
    };
    table
        .iter()
        .find(|(path, _)| *path == name)
        .map(|(_, text)| *text)
}

pub fn render(name: &str, context: &impl Serialize) -> Result<String, FixtureError> {
    let fail = |source| FixtureError {
        name: name.to_string(),
        source,
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // Templates place values themselves (quoting with `tojson` where needed); minijinja's
    // default escaping by file extension would JSON-quote every value in the realm template.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_loader(|name| Ok(source(name).map(str::to_string)));
    let template = env.get_template(name).map_err(fail)?;
    template.render(context).map_err(fail)
}
