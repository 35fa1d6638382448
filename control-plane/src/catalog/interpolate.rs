//! `${NAME}`, `${NAME:-default}` and `${file:PATH}` in the catalog's string
//! values: the lookup is the caller's (the environment, the files it reads),
//! so that loading a catalog does no I/O of its own.

use super::CatalogError;

/// The start of a `${...}` name that names a file: `${file:/run/secrets/x}`.
pub const FILE_PREFIX: &str = "file:";

/// Why a lookup has no value for a `${file:...}` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// What went wrong, naming the file and the OS error, never the content:
    /// `cannot read secret file /run/secrets/x: No such file or directory (os error 2)`.
    pub reason: String,
    /// The file does not exist: a `:-default` then applies, as to an unset
    /// variable. Any other failure is reported even with a default.
    pub absent: bool,
}

/// What a lookup finds for a `${...}` name: the value, `None` for an unset
/// variable, or why a file gave none.
pub type Lookup = Result<Option<String>, Unreadable>;

/// Interpolates every string value of a parsed catalog; every undefined
/// variable and unreadable file is reported at once.
pub(super) fn interpolate_doc(doc: &mut serde_yaml::Value, lookup: &impl Fn(&str) -> Lookup) -> Result<(), CatalogError> {
    let mut unresolved = Unresolved::default();
    interpolate_strings(doc, lookup, &mut unresolved);
    unresolved.into_result()
}

fn interpolate_strings(v: &mut serde_yaml::Value, lookup: &impl Fn(&str) -> Lookup, unresolved: &mut Unresolved) {
    match v {
        serde_yaml::Value::String(s) => *s = interpolate_into(s, lookup, unresolved),
        serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(|i| interpolate_strings(i, lookup, unresolved)),
        serde_yaml::Value::Mapping(m) => m.iter_mut().for_each(|(_, i)| interpolate_strings(i, lookup, unresolved)),
        serde_yaml::Value::Tagged(t) => interpolate_strings(&mut t.value, lookup, unresolved),
        _ => {}
    }
}

/// Replaces `${NAME}` by the variable's value and `${NAME:-default}` by the
/// value or, when unset or empty, the default; `$${` stands for a literal `${`.
/// Every undefined variable is reported at once.
pub fn interpolate(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, CatalogError> {
    interpolate_with(text, |name| Ok(env(name)))
}

/// [`interpolate`], with `${file:PATH}` too: the file's content (as
/// `lookup` reads it) without its trailing newlines (`\n`, `\r\n`: secrets
/// written with `echo` end in one). `${file:PATH:-default}` takes the default
/// when the file does not exist or is empty, as `${VAR:-default}` does when
/// VAR is unset or empty (an optional Kubernetes Secret is a file that is not
/// there); a file that exists but cannot be read (permissions, a directory,
/// not UTF-8) is reported even with a default. `$${file:` stays literal.
/// Every undefined variable and unreadable file is reported at once.
pub fn interpolate_with(text: &str, lookup: impl Fn(&str) -> Lookup) -> Result<String, CatalogError> {
    let mut unresolved = Unresolved::default();
    let out = interpolate_into(text, &lookup, &mut unresolved);
    unresolved.into_result().map(|()| out)
}

/// What interpolation could not resolve, in the order found.
#[derive(Default)]
struct Unresolved {
    missing: Vec<String>,
    unreadable: Vec<String>,
}

impl Unresolved {
    fn into_result(self) -> Result<(), CatalogError> {
        let Unresolved { mut missing, mut unreadable } = self;
        let mut seen = std::collections::BTreeSet::new();
        missing.retain(|m| seen.insert(m.clone()));
        unreadable.retain(|u| seen.insert(u.clone()));
        match (missing.is_empty(), unreadable.is_empty()) {
            (true, true) => Ok(()),
            (false, true) => Err(CatalogError::MissingEnv(missing)),
            _ => {
                let mut all: Vec<String> = missing.into_iter().map(|m| format!("undefined environment variable {m}")).collect();
                all.extend(unreadable);
                Err(CatalogError::Unresolved(all))
            }
        }
    }
}

fn interpolate_into(text: &str, lookup: &impl Fn(&str) -> Lookup, unresolved: &mut Unresolved) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        // `${NAME:-default}` falls back to the default when NAME is unset or empty.
        let (name, default) = match after[..end].split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (&after[..end], None),
        };
        let found = match lookup(name) {
            Ok(Some(v)) if name.starts_with(FILE_PREFIX) => Ok(Some(without_trailing_newlines(&v).to_string())),
            Err(Unreadable { absent: true, .. }) if default.is_some() => Ok(None),
            other => other,
        };
        match (found.map(|v| v.filter(|v| !v.is_empty() || default.is_none())), default) {
            (Ok(Some(v)), _) => out.push_str(&v),
            (Ok(None), Some(d)) => out.push_str(d),
            (Ok(None), None) => unresolved.missing.push(name.to_string()),
            (Err(e), _) => unresolved.unreadable.push(e.reason),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `s` without the newlines (`\n`, `\r\n`) it ends with.
fn without_trailing_newlines(mut s: &str) -> &str {
    while let Some(rest) = s.strip_suffix('\n') {
        s = rest.strip_suffix('\r').unwrap_or(rest);
    }
    s
}
