//! Settings as they are written, in every spelling: `key = value`, `key: value`, command-line
//! flags, Kubernetes env entries, YAML lists; keys normalised to oauth2-proxy's config spelling.

/// One `key = value` setting as found, its key normalised to oauth2-proxy's config spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Setting {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) line: usize,
}

/// Keys that hold secrets: never quoted.
pub(super) const SECRET_KEYS: &[&str] = &[
    "client_secret",
    "cookie_secret",
    "redis_password",
    "secret",
    "password",
    "private_key",
];

/// oauth2-proxy's alpha configuration (`--alpha-config`, YAML in camelCase) names some
/// settings differently from its flags: their legacy spelling, lower-cased as read.
const ALPHA_CONFIG_KEYS: &[(&str, &str)] = &[
    ("insecureskipnonce", "insecure_oidc_skip_nonce"),
    (
        "insecureskipissuerverification",
        "insecure_oidc_skip_issuer_verification",
    ),
    (
        "insecureallowunverifiedemail",
        "insecure_oidc_allow_unverified_email",
    ),
    ("issuerurl", "oidc_issuer_url"),
];

pub(super) fn normalise_key(raw: &str) -> String {
    let key = raw
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .trim_start_matches('-')
        .to_ascii_lowercase()
        .replace('-', "_");
    if let Some((_, legacy)) = ALPHA_CONFIG_KEYS.iter().find(|(alpha, _)| *alpha == key) {
        return legacy.to_string();
    }
    key.strip_prefix("oauth2_proxy_")
        .map(str::to_string)
        .unwrap_or(key)
}

pub(super) fn clean_value(raw: &str) -> String {
    let value = raw.split(" #").next().unwrap_or(raw).trim();
    value
        .trim_matches(|c| c == '"' || c == '\'')
        .trim()
        .to_string()
}

/// Every `key = value`, `key: value`, `--key=value`, `--key value` and Kubernetes
/// `- name: KEY` / `value: ...` pair in `text`.
pub(super) fn settings(text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut index = 0;
    while index < lines.len() {
        let line_index = index;
        let mut line = lines[index].to_string();
        index += 1;
        // A TOML array written over several lines is one setting.
        if line.contains("= [") && !line.contains(']') {
            while index < lines.len() {
                let next = lines[index];
                index += 1;
                line.push(' ');
                line.push_str(next.split(" #").next().unwrap_or(next).trim());
                if next.contains(']') {
                    break;
                }
            }
        }
        let index = line_index;
        let uncommented = line.split(" #").next().unwrap_or(&line).to_string();
        let trimmed = uncommented.trim().trim_start_matches("- ").trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        // Kubernetes env entries: `- name: OAUTH2_PROXY_X` then `value: ...`.
        if let Some(name) = trimmed.strip_prefix("name:") {
            let name = clean_value(name);
            if name.to_ascii_uppercase().starts_with("OAUTH2_PROXY_") {
                if let Some(value) = lines
                    .iter()
                    .skip(index + 1)
                    .take(2)
                    .find_map(|l| l.trim().strip_prefix("value:"))
                {
                    out.push(Setting {
                        key: normalise_key(&name),
                        value: clean_value(value),
                        line: index + 1,
                    });
                }
                continue;
            }
        }
        // Command-line flags, possibly several on one line or quoted in a YAML list.
        if trimmed.contains("--") {
            let tokens: Vec<&str> = trimmed
                .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
                .map(|t| t.trim_matches(|c| c == '"' || c == '\''))
                .filter(|t| !t.is_empty())
                .collect();
            let mut found = false;
            for (i, token) in tokens.iter().enumerate() {
                if let Some(flag) = token.strip_prefix("--") {
                    found = true;
                    let (key, value) = match flag.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => match tokens.get(i + 1) {
                            Some(next) if !next.starts_with("--") => {
                                (flag.to_string(), next.to_string())
                            }
                            _ => (flag.to_string(), "true".to_string()),
                        },
                    };
                    out.push(Setting {
                        key: normalise_key(&key),
                        value: clean_value(&value),
                        line: index + 1,
                    });
                }
            }
            if found {
                continue;
            }
        }
        let split = trimmed.find(['=', ':']);
        if let Some(at) = split {
            let (key, value) = trimmed.split_at(at);
            let (key, value) = (key.trim(), &value[1..]);
            if key.is_empty() || key.contains(' ') && !key.starts_with('"') {
                continue;
            }
            out.push(Setting {
                key: normalise_key(key),
                value: clean_value(value),
                line: index + 1,
            });
        }
    }
    out
}

/// The text without comment lines: a setting described in a comment is not a setting.
pub(super) fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn truthy(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    )
}

pub(super) fn list(value: &str) -> Vec<String> {
    value
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(clean_value)
        .filter(|v| !v.is_empty())
        .collect()
}

pub(super) fn first<'a>(found: &'a [Setting], keys: &[&str]) -> impl Iterator<Item = &'a Setting> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    found.iter().filter(move |s| keys.contains(&s.key))
}

/// The items of every YAML list under one of `keys`, block (`- item`, `- exact: item`) or
/// flow (`[a, b]`) style: (line, item).
pub(super) fn yaml_list(text: &str, keys: &[&str]) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let names_a_key = keys.iter().any(|key| {
            trimmed
                .trim_start_matches("- ")
                .trim_matches('"')
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start_matches('"').trim_start().starts_with(':'))
        });
        if !names_a_key {
            continue;
        }
        let inline = trimmed.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
        if inline.starts_with('[') {
            items.extend(list(inline).into_iter().map(|item| (index + 1, item)));
            continue;
        }
        let indent = line.len() - trimmed.len();
        for (offset, next) in lines.iter().enumerate().skip(index + 1) {
            let next_trimmed = next.trim_start();
            if next_trimmed.is_empty() {
                continue;
            }
            let next_indent = next.len() - next_trimmed.len();
            if next_indent < indent || (next_indent == indent && !next_trimmed.starts_with("- ")) {
                break;
            }
            let item = next_trimmed.trim_start_matches("- ").trim();
            // Envoy's string matchers: `- exact: name`, `- prefix: x-auth-request-`.
            let item = ["exact:", "prefix:", "safe_regex:", "regex:"]
                .iter()
                .find_map(|m| item.strip_prefix(m))
                .unwrap_or(item);
            if !item.is_empty() && !item.ends_with(':') {
                items.push((offset + 1, clean_value(item)));
            }
        }
    }
    items
}

/// Every trusted-proxy count written in `text`: (line, key, count).
pub(super) fn trusted_proxy_counts(text: &str) -> Vec<(usize, &'static str, u32)> {
    let mut counts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for key in ["numTrustedProxies", "xff_num_trusted_hops"] {
            for (at, _) in line.match_indices(key) {
                let value = line[at + key.len()..].trim_start_matches(['"', '\'', ':', '=', ' ']);
                let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(count) = digits.parse() {
                    counts.push((index + 1, key, count));
                }
            }
        }
    }
    counts
}
