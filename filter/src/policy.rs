//! Who the caller is, and what it may see and use: authorization rules as a
//! pure function of the caller and the thing asked for.
//!
//! A rule applies to a caller by principal or group; which rules apply is a
//! [`Applicable`] set, computed once per request. The decision on one
//! server, tool, prompt or resource is then a function of that set alone, so
//! lists filtered for one set serve every caller with the same set.

use crate::config::{AuthorizationConfig, PolicyRule, Targets};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    pub principal: String,
    pub groups: Vec<String>,
    /// OAuth scopes its token carries (JWT only).
    pub scopes: Vec<String>,
}

/// What is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
    /// A resource, by its normalised URI (`uri::normalize`).
    Resource,
    /// A resource template, by its URI template: a pattern speaks of it when
    /// it matches the template as written, or every URI the template can
    /// expand to (see [`covers_template`]).
    Template,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
            Kind::Template => "resource template",
        }
    }
}

/// The ruling on one authorization check, with the reason the audit log gives.
/// (Not to be confused with `relay::Verdict`, what becomes of a message in a
/// stream.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruling {
    pub allowed: bool,
    pub reason: String,
}

/// What a server offers a caller, as far as reaching it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// It lists anything at all (tools, prompts, resources, templates).
    pub items: bool,
    /// Something it lists is visible to the caller.
    pub visible: bool,
    /// It lists resource templates, through which reads of URIs that no
    /// list names may be allowed.
    pub templates: bool,
}

/// Which rules apply to a caller: a bit per rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Applicable(Vec<u64>);

impl Applicable {
    fn set(&mut self, i: usize) {
        let word = i / 64;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        if let Some(w) = self.0.get_mut(word) {
            *w |= 1 << (i % 64);
        }
    }

    fn has(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// `*` matches any run of characters (also none), `?` exactly one; anything
/// else itself. Linear in the text for the patterns catalogs use, and
/// never worse than quadratic.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

pub fn any_matches(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob(p, text))
}

/// Whether `subset` holds `name`: an include matches (or there is none) and
/// no exclude does.
pub fn in_subset(subset: &crate::config::Subset, name: &str) -> bool {
    subset.include.as_ref().is_none_or(|include| any_matches(include, name)) && !any_matches(&subset.exclude, name)
}

/// Whether a rule (or a limit) naming `principals` and `groups` concerns the
/// caller. Neither listed: every caller, even an anonymous one.
pub fn concerns(principals: &[String], groups: &[String], caller: Option<&Caller>) -> bool {
    if principals.is_empty() && groups.is_empty() {
        return true;
    }
    let Some(c) = caller else { return false };
    any_matches(principals, &c.principal) || c.groups.iter().any(|g| any_matches(groups, g))
}

/// Whether glob `pattern` matches every URI that `template` (RFC 6570)
/// expands to: it matches the template's literal prefix (up to its first
/// `{`) and ends with `*`, which then takes whatever the expansion adds.
/// Sound, not complete: a pattern this misses still judges each read
/// through the template, URI by URI.
pub fn covers_template(pattern: &str, template: &str) -> bool {
    let prefix = template.split('{').next().unwrap_or_default();
    pattern.ends_with('*') && glob(pattern, prefix)
}

fn speaks_of(targets: &Targets, kind: Kind, server: &str, name: &str) -> bool {
    if any_matches(&targets.servers, server) {
        return true;
    }
    match kind {
        Kind::Tool => any_matches(&targets.tools, name),
        Kind::Prompt => any_matches(&targets.prompts, name),
        Kind::Resource => any_matches(&targets.resources, name),
        Kind::Template => targets.resources.iter().any(|p| glob(p, name) || covers_template(p, name)),
    }
}

impl AuthorizationConfig {
    /// The rules that apply to the caller.
    pub fn applicable(&self, caller: Option<&Caller>) -> Applicable {
        let mut set = Applicable::default();
        for (i, rule) in self.rules.iter().enumerate() {
            if concerns(&rule.principals, &rule.groups, caller) {
                set.set(i);
            }
        }
        set
    }

    /// May a caller to whom `applicable` rules apply use `name` (a tool,
    /// prompt or resource URI) on `server`? A deny wins over any allow.
    pub fn decide(&self, applicable: &Applicable, kind: Kind, server: &str, name: &str) -> Ruling {
        let rules = || self.rules.iter().enumerate().filter(|(i, _)| applicable.has(*i)).map(|(_, r)| r);
        let found = |pick: fn(&PolicyRule) -> &Targets| rules().find(|r| speaks_of(pick(r), kind, server, name));
        if let Some(rule) = found(|r| &r.deny) {
            return Ruling { allowed: false, reason: format!("rule {:?} denies it", rule.name) };
        }
        if let Some(rule) = found(|r| &r.allow) {
            return Ruling { allowed: true, reason: format!("rule {:?} allows it", rule.name) };
        }
        let reason = if self.default_allow { "no rule denies it" } else { "no rule allows it" };
        Ruling { allowed: self.default_allow, reason: reason.into() }
    }

    /// May a caller to whom `applicable` rules apply reach `server` at all:
    /// have a session with it, its notifications and streams? Only if it may
    /// use something there: a rule names the server (a deny wins), or an
    /// item it lists is visible, or a read through one of its templates may
    /// be allowed, or it lists nothing yet and the default allows.
    pub fn reaches(&self, applicable: &Applicable, server: &str, offer: Offer) -> bool {
        let mut rules = self.rules.iter().enumerate().filter(|(i, _)| applicable.has(*i)).map(|(_, r)| r);
        if rules.clone().any(|r| any_matches(&r.deny.servers, server)) {
            return false;
        }
        rules.clone().any(|r| any_matches(&r.allow.servers, server))
            || offer.visible
            || (offer.templates && (self.default_allow || rules.any(|r| !r.allow.resources.is_empty())))
            || (!offer.items && self.default_allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyRule;

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("time__*", "time__get_current_time"));
        assert!(!glob("time__*", "memory__read"));
        assert!(glob("*__delete_*", "memory__delete_entities"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("file:///docs/*", "file:///docs/a/b.md"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(glob("*a*b*c", "xxaxxbxxc"));
        assert!(!glob("*a*b*c", "xxaxxcxxb"));
        assert!(glob("ü*", "über"));
    }

    fn caller(principal: &str, groups: &[&str]) -> Caller {
        Caller { principal: principal.into(), groups: groups.iter().map(|g| g.to_string()).collect(), scopes: vec![] }
    }

    fn rules() -> AuthorizationConfig {
        let t = |servers: &[&str], tools: &[&str]| Targets {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            tools: tools.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        AuthorizationConfig {
            default_allow: false,
            rules: vec![
                PolicyRule {
                    name: "ops".into(),
                    principals: vec![],
                    groups: vec!["ops".into()],
                    allow: t(&["*"], &[]),
                    deny: Targets::default(),
                },
                PolicyRule {
                    name: "readers".into(),
                    principals: vec!["alice".into()],
                    groups: vec!["read*".into()],
                    allow: t(&[], &["time__*"]),
                    deny: t(&[], &["*__set*"]),
                },
                PolicyRule {
                    name: "everyone".into(),
                    principals: vec![],
                    groups: vec![],
                    allow: t(&[], &["echo__ping"]),
                    deny: Targets::default(),
                },
            ],
        }
    }

    #[test]
    fn deny_wins_then_allow_then_default() {
        let r = rules();
        let reader = r.applicable(Some(&caller("bob", &["readers"])));
        assert!(r.decide(&reader, Kind::Tool, "time", "time__now").allowed);
        let denied = r.decide(&reader, Kind::Tool, "time", "time__set_zone");
        assert_eq!(denied, Ruling { allowed: false, reason: "rule \"readers\" denies it".into() });
        assert!(r.decide(&reader, Kind::Tool, "echo", "echo__ping").allowed);
        assert_eq!(r.decide(&reader, Kind::Tool, "memory", "memory__read").reason, "no rule allows it");
        // A principal match is enough; an ops member gets every server,
        // except what a rule that also applies denies.
        let both = r.applicable(Some(&caller("alice", &["ops"])));
        assert!(r.decide(&both, Kind::Tool, "memory", "memory__read").allowed);
        assert!(!r.decide(&both, Kind::Tool, "time", "time__set_zone").allowed);
        // Prompts are not tools: the tool patterns do not speak of them.
        assert!(!r.decide(&reader, Kind::Prompt, "time", "time__now").allowed);
        // Anonymous callers get only the rules for everyone.
        let anon = r.applicable(None);
        assert!(r.decide(&anon, Kind::Tool, "echo", "echo__ping").allowed);
        assert!(!r.decide(&anon, Kind::Tool, "time", "time__now").allowed);
    }

    #[test]
    fn a_template_is_spoken_of_when_all_of_it_is() {
        assert!(covers_template("file:///*", "file:///{path}"));
        assert!(covers_template("*", "file:///{path}"));
        assert!(covers_template("file:///etc/*", "file:///etc/{name}"));
        assert!(!covers_template("file:///etc/*", "file:///{path}"));
        assert!(!covers_template("file:///etc/passwd", "file:///etc/{name}"));
        let deny = |pattern: &str| AuthorizationConfig {
            default_allow: true,
            rules: vec![PolicyRule {
                name: "no-etc".into(),
                principals: vec![],
                groups: vec![],
                allow: Targets::default(),
                deny: Targets { resources: vec![pattern.into()], ..Default::default() },
            }],
        };
        let hidden = |pattern: &str, template: &str| {
            let r = deny(pattern);
            !r.decide(&r.applicable(None), Kind::Template, "fs", template).allowed
        };
        assert!(hidden("file:///etc/*", "file:///etc/{name}"));
        assert!(hidden("file:///{path}", "file:///{path}"), "a pattern naming the template as written");
        assert!(!hidden("file:///etc/*", "file:///{path}"), "a deny on part of it leaves it listed");
    }

    #[test]
    fn many_rules_fit() {
        let mut r = rules();
        for i in 0..130 {
            r.rules.push(PolicyRule {
                name: format!("r{i}"),
                principals: vec![format!("p{i}")],
                groups: vec![],
                allow: Targets::default(),
                deny: Targets::default(),
            });
        }
        let set = r.applicable(Some(&caller("p129", &[])));
        assert!(set.has(132) && !set.has(131) && !set.has(0));
    }
}
