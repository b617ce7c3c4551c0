//! Reading the forms a browser would fill in: Keycloak's login form (keycloak.v2 and legacy
//! themes) and oauth2-proxy's sign-in button. Attribute values come out of a real HTML parser,
//! so an action like `...?session_code=a&amp;execution=b` is decoded as a browser decodes it.

use reqwest::Method;
use scraper::{ElementRef, Html, Selector};
use url::Url;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FormError {
    #[error(
        "no login form on {url}: expected a <form> with a password field (page title: {title:?}){}",
        idp_error.as_ref().map(|e| format!("; the page says: {e:?}")).unwrap_or_default()
    )]
    NoLoginForm {
        url: String,
        title: String,
        /// The IdP's own error message, when the page is its error page.
        idp_error: Option<String>,
    },
    #[error("the login form on {url} has no usable action attribute ({action:?})")]
    BadAction { url: String, action: String },
    #[error("the login form on {url} has no {field} field")]
    MissingField { url: String, field: &'static str },
}

/// A form ready to submit: resolved action, method and the values a browser would send.
#[derive(Debug, Clone, PartialEq)]
pub struct HtmlForm {
    pub action: Url,
    pub method: Method,
    pub fields: Vec<(String, String)>,
}

impl HtmlForm {
    /// The URL a GET submission goes to: the action with the fields as its query.
    pub fn action_with_query(&self) -> Url {
        let mut url = self.action.clone();
        if self.method == Method::GET {
            url.set_query(None);
            url.query_pairs_mut().extend_pairs(&self.fields);
        }
        url
    }

    pub fn set(&mut self, name: &str, value: &str) {
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some(field) => field.1 = value.to_string(),
            None => self.fields.push((name.to_string(), value.to_string())),
        }
    }
}

/// The login form fields that take the user's credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginForm {
    pub form: HtmlForm,
    pub username_field: String,
    pub password_field: String,
}

impl LoginForm {
    pub fn fill(mut self, username: &str, password: &str) -> HtmlForm {
        let (user, pass) = (self.username_field.clone(), self.password_field.clone());
        self.form.set(&user, username);
        self.form.set(&pass, password);
        self.form
    }
}

fn selector(css: &str) -> Selector {
    Selector::parse(css).expect("selectors are checked when loaded")
}

fn page_title(document: &Html) -> String {
    document
        .select(&selector("title"))
        .next()
        .map(|t| t.text().collect::<String>().trim().to_string())
        .unwrap_or_default()
}

fn form_from(element: ElementRef<'_>, base: &Url) -> Result<HtmlForm, FormError> {
    let raw_action = element.value().attr("action").unwrap_or("");
    let action = base.join(raw_action).map_err(|_| FormError::BadAction {
        url: base.to_string(),
        action: raw_action.to_string(),
    })?;
    let method = match element
        .value()
        .attr("method")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("post") => Method::POST,
        _ => Method::GET,
    };
    let mut fields = Vec::new();
    for input in element.select(&selector("input[name]")) {
        let attrs = input.value();
        let kind = attrs.attr("type").unwrap_or("text").to_ascii_lowercase();
        if matches!(kind.as_str(), "submit" | "button" | "image" | "reset") {
            continue;
        }
        if matches!(kind.as_str(), "checkbox" | "radio") && attrs.attr("checked").is_none() {
            continue;
        }
        let name = attrs.attr("name").unwrap_or_default().to_string();
        fields.push((name, attrs.attr("value").unwrap_or_default().to_string()));
    }
    // A browser sends the name/value of the submit control that was clicked: the first one.
    let submit = element
        .select(&selector("button[name], input[type=submit][name]"))
        .find(|e| {
            e.value()
                .attr("type")
                .is_none_or(|t| t.eq_ignore_ascii_case("submit"))
        });
    if let Some(control) = submit {
        let name = control.value().attr("name").unwrap_or_default();
        let value = control.value().attr("value").unwrap_or_default();
        fields.push((name.to_string(), value.to_string()));
    }
    Ok(HtmlForm {
        action,
        method,
        fields,
    })
}

/// How each IdP's pages are recognised (`fixtures/idp/login-pages.yaml`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginPages {
    login_form: Vec<String>,
    username_field: Vec<String>,
    login_error: Vec<String>,
    broker_link: Vec<String>,
    page_error: Vec<String>,
}

fn login_pages() -> &'static LoginPages {
    static PAGES: std::sync::OnceLock<LoginPages> = std::sync::OnceLock::new();
    PAGES.get_or_init(|| {
        let text = crate::fixtures::source("idp/login-pages.yaml")
            .expect("fixtures/idp/login-pages.yaml is embedded");
        let pages: LoginPages = serde_saphyr::from_str(text)
            .unwrap_or_else(|e| panic!("fixtures/idp/login-pages.yaml is invalid: {e}"));
        for css in pages
            .login_form
            .iter()
            .chain(&pages.username_field)
            .chain(&pages.login_error)
            .chain(&pages.broker_link)
            .chain(&pages.page_error)
        {
            Selector::parse(&css.replace("{alias}", "alias")).unwrap_or_else(|e| {
                panic!("fixtures/idp/login-pages.yaml: bad selector {css:?}: {e}")
            });
        }
        pages
    })
}

/// The first element any of `selectors` matches, in the list's order.
fn first_match<'d>(
    root: scraper::ElementRef<'d>,
    selectors: &[String],
) -> Option<scraper::ElementRef<'d>> {
    selectors
        .iter()
        .find_map(|css| root.select(&selector(css)).next())
}

/// Finds the IdP's login form (the selectors of `fixtures/idp/login-pages.yaml`), else the
/// first form with a password field.
pub fn find_login_form(html: &str, page_url: &Url) -> Result<LoginForm, FormError> {
    let document = Html::parse_document(html);
    let element = first_match(document.root_element(), &login_pages().login_form)
        .or_else(|| {
            document
                .select(&selector("form"))
                .find(|f| f.select(&selector("input[type=password]")).next().is_some())
        })
        .ok_or_else(|| FormError::NoLoginForm {
            url: page_url.to_string(),
            title: page_title(&document),
            idp_error: idp_error_text(&document),
        })?;
    let password_field = element
        .select(&selector("input[type=password][name]"))
        .next()
        .and_then(|e| e.value().attr("name"))
        .ok_or(FormError::MissingField {
            url: page_url.to_string(),
            field: "password",
        })?
        .to_string();
    let username_field = first_match(element, &login_pages().username_field)
        .and_then(|e| e.value().attr("name"))
        .ok_or(FormError::MissingField {
            url: page_url.to_string(),
            field: "username",
        })?
        .to_string();
    Ok(LoginForm {
        form: form_from(element, page_url)?,
        username_field,
        password_field,
    })
}

/// The error message an IdP's login page shows (wrong password, locked account, ...).
pub fn find_login_error(html: &str) -> Option<String> {
    login_error_text(&Html::parse_document(html))
}

/// An IdP error page's message (e.g. "Invalid parameter: redirect_uri"), else a login error.
fn idp_error_text(document: &Html) -> Option<String> {
    first_text(document, &login_pages().page_error).or_else(|| login_error_text(document))
}

fn login_error_text(document: &Html) -> Option<String> {
    first_text(document, &login_pages().login_error)
}

fn first_text(document: &Html, selectors: &[String]) -> Option<String> {
    selectors
        .iter()
        .flat_map(|css| document.select(&selector(css)).collect::<Vec<_>>())
        .map(|e| collapse_whitespace(&e.text().collect::<String>()))
        .find(|text| !text.is_empty())
}

/// On a brokering IdP's login page, where the link to the upstream identity provider `alias`
/// leads (selectors of `fixtures/idp/login-pages.yaml`).
pub fn find_broker_link(html: &str, page_url: &Url, alias: &str) -> Option<Url> {
    let document = Html::parse_document(html);
    login_pages().broker_link.iter().find_map(|css| {
        let css = css.replace("{alias}", alias);
        let parsed = Selector::parse(&css).ok()?;
        let href = document.select(&parsed).next()?.value().attr("href")?;
        page_url.join(href).ok()
    })
}

/// oauth2-proxy's sign-in page: the form whose button starts the OIDC flow.
pub fn find_provider_button(html: &str, page_url: &Url) -> Option<HtmlForm> {
    let document = Html::parse_document(html);
    document
        .select(&selector("form"))
        .find(|f| {
            f.value()
                .attr("action")
                .is_some_and(|a| a.contains("/oauth2/start"))
                || f.text().any(|t| t.contains("Sign in with"))
        })
        .and_then(|f| form_from(f, page_url).ok())
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
