//! Which tools fit a task (issue 20's tool router): a lexical ranking,
//! BM25, over each tool's words.
//!
//! A tool's words come from its name, its description and its arguments'
//! names (camelCase and snake_case split, lower-cased, plural and verb
//! endings trimmed, common English words left out); the name counts three
//! times and the arguments twice, since they say what a tool does more
//! surely than prose. The control plane builds the [`ToolIndex`] when it
//! compiles the catalog; the filter ranks with it, locally, with no model
//! and no upstream call. Pure: no clock, no I/O, no panics.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// BM25's saturation of a word's count, and how much a document's length
/// weighs: the usual values.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// How often each part of a tool counts toward its words.
const NAME_WEIGHT: u16 = 3;
const ARGUMENT_WEIGHT: u16 = 2;

/// Words too common to say anything of a task or a tool.
const STOPWORDS: &[&str] = &[
    "a", "about", "all", "an", "and", "any", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "get", "give", "has",
    "have", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "please", "some", "that", "the", "their", "then",
    "this", "to", "use", "want", "what", "when", "which", "will", "with", "you", "your",
];

/// A task's or a tool's words: split at anything not a letter or digit, at
/// a lower-to-upper case change (`getWeather`) and at a letter-digit
/// change; lower-cased; trimmed of a plural or verb ending; without
/// [`STOPWORDS`] and one-letter words.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut previous: Option<char> = None;
    let mut push = |w: &mut String| {
        if !w.is_empty() {
            let word = stem(&w.to_lowercase());
            if word.chars().count() > 1 && !STOPWORDS.contains(&word.as_str()) {
                out.push(word);
            }
            w.clear();
        }
    };
    for c in text.chars() {
        if !c.is_alphanumeric() {
            push(&mut current);
            previous = None;
            continue;
        }
        let boundary = previous.is_some_and(|p| (p.is_lowercase() && c.is_uppercase()) || (p.is_alphabetic() != c.is_alphabetic()));
        if boundary {
            push(&mut current);
        }
        current.push(c);
        previous = Some(c);
    }
    push(&mut current);
    out
}

/// A word's stem, crudely, so that a word's forms meet: `files` and `file`,
/// `reading` and `read`, `queries` and `query`, `updated`, `updates` and
/// `update`, `matches` and `match`. Short words keep their endings (`bus`,
/// `is`, `time`).
fn stem(word: &str) -> String {
    let long = |w: &str| w.chars().count() >= 5;
    let mut base = word;
    if long(word) {
        if let Some(b) = word.strip_suffix("ies") {
            return format!("{b}y");
        }
        let sibilant = ["sses", "xes", "zes", "ches", "shes"].iter().any(|s| word.ends_with(s));
        let suffixes: &[&str] = if sibilant { &["es"] } else { &["ing", "ed", "s"] };
        for suffix in suffixes {
            if word.ends_with("ss") {
                break;
            }
            if let Some(b) = word.strip_suffix(suffix).filter(|b| b.chars().count() >= 3) {
                base = b;
                break;
            }
        }
    }
    match base.strip_suffix('e') {
        Some(b) if long(base) => b.to_string(),
        _ => base.to_string(),
    }
}

/// One tool's words with their counts (weighted by where they appear), as
/// the control plane computed them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexedTool {
    pub words: Vec<(String, u16)>,
}

impl IndexedTool {
    /// A tool's words from its name, description and argument names.
    pub fn new(name: &str, description: &str, arguments: &[&str]) -> Self {
        let mut counts: HashMap<String, u16> = HashMap::new();
        let mut add = |text: &str, weight: u16| {
            for w in words(text) {
                let c = counts.entry(w).or_default();
                *c = c.saturating_add(weight);
            }
        };
        add(name, NAME_WEIGHT);
        add(description, 1);
        for a in arguments {
            add(a, ARGUMENT_WEIGHT);
        }
        let mut words: Vec<(String, u16)> = counts.into_iter().collect();
        words.sort();
        IndexedTool { words }
    }

    fn len(&self) -> f32 {
        self.words.iter().map(|(_, c)| f32::from(*c)).sum()
    }
}

/// Every tool's words, in the order of the configuration's tools, and the
/// figures BM25 needs of the whole (computed once, when loaded).
#[derive(Debug, Clone, Default)]
pub struct ToolIndex {
    tools: Vec<IndexedTool>,
    /// In how many tools each word appears.
    document_frequency: HashMap<String, u32>,
    average_len: f32,
}

impl ToolIndex {
    pub fn new(tools: Vec<IndexedTool>) -> Self {
        let mut document_frequency: HashMap<String, u32> = HashMap::new();
        for t in &tools {
            for (w, _) in &t.words {
                *document_frequency.entry(w.clone()).or_default() += 1;
            }
        }
        let total: f32 = tools.iter().map(IndexedTool::len).sum();
        let average_len = if tools.is_empty() { 0.0 } else { total / tools.len() as f32 };
        ToolIndex { tools, document_frequency, average_len }
    }

    /// The tools that fit `task`, best first, at most `limit`, among those
    /// `visible` lets through (the caller's authorization): each tool's
    /// index and score. Tools that share no word with the task are left
    /// out; equal scores keep the configuration's order.
    pub fn search(&self, task: &str, limit: usize, visible: impl Fn(usize) -> bool) -> Vec<(usize, f32)> {
        let mut query = words(task);
        query.sort();
        query.dedup();
        let n = self.tools.len() as f32;
        let idf = |w: &str| {
            let df = self.document_frequency.get(w).copied().unwrap_or(0) as f32;
            ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
        };
        let weights: Vec<(&str, f32)> = query.iter().map(|w| (w.as_str(), idf(w))).collect();
        let mut scored: Vec<(usize, f32)> = self
            .tools
            .iter()
            .enumerate()
            .filter(|(i, _)| visible(*i))
            .filter_map(|(i, t)| {
                let len = t.len();
                let norm = K1 * (1.0 - B + B * len / self.average_len.max(1.0));
                let score: f32 = weights
                    .iter()
                    .filter_map(|(w, idf)| {
                        let tf = f32::from(t.words.binary_search_by(|(k, _)| k.as_str().cmp(w)).ok().and_then(|at| t.words.get(at))?.1);
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                (score > 0.0).then_some((i, score))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(limit);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_cases_and_drop_what_says_nothing() {
        assert_eq!(words("getWeatherForecast"), ["weather", "forecast"]);
        assert_eq!(words("read_text_file"), ["read", "text", "file"]);
        assert_eq!(words("Lists the files in a directory"), ["list", "file", "directory"]);
        assert_eq!(words("base64Decode"), ["base", "64", "decod"], "stems, not words: decode and decoded meet");
        assert_eq!(words("queries, listed, reading, bus, class"), ["query", "list", "read", "bus", "class"]);
        for forms in [["update", "updates", "updated"], ["echo", "echoes", "echoed"], ["match", "matches", "matching"]] {
            let stems: Vec<Vec<String>> = forms.iter().map(|f| words(f)).collect();
            assert!(stems.windows(2).all(|w| w[0] == w[1]), "{forms:?} -> {stems:?}");
        }
        assert!(words("").is_empty() && words("  -- a I to ").is_empty());
        // Any text, even odd Unicode, gives words without a panic.
        assert_eq!(words("Ünïcödé ÄBC straße"), ["ünïcödé", "äbc", "straß"]);
    }

    fn index() -> ToolIndex {
        ToolIndex::new(vec![
            IndexedTool::new("fs__read_text_file", "Read the complete contents of a file as text.", &["path", "head", "tail"]),
            IndexedTool::new("fs__list_directory", "Get a detailed listing of all files and directories in a specified path.", &["path"]),
            IndexedTool::new("time__get_current_time", "Get current time in a specific timezone.", &["timezone"]),
            IndexedTool::new("echo__echo", "Echoes back the input.", &["text"]),
            IndexedTool::new("everything__add", "Adds two numbers.", &["a", "b"]),
        ])
    }

    #[test]
    fn the_tool_a_person_would_pick_comes_first() {
        let idx = index();
        let first = |task: &str| idx.search(task, 5, |_| true).first().map(|(i, _)| *i);
        assert_eq!(first("what time is it in Tokyo? use the timezone Asia/Tokyo"), Some(2));
        assert_eq!(first("show me the contents of README.md"), Some(0));
        assert_eq!(first("which files are in the src directory"), Some(1));
        assert_eq!(first("add 2 and 3 together"), Some(4));
        assert_eq!(first("echo this text back to me"), Some(3));
        assert_eq!(first("bake a chocolate cake"), None, "no shared word: nothing fits");
    }

    #[test]
    fn the_ranking_respects_what_the_caller_may_see_and_the_limit() {
        let idx = index();
        let all = idx.search("file directory path", 5, |_| true);
        assert_eq!(all.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 0]);
        assert!(all.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(idx.search("file directory path", 1, |_| true).len(), 1);
        assert_eq!(idx.search("file directory path", 5, |i| i != 1).iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0]);
        assert!(ToolIndex::new(vec![]).search("anything", 5, |_| true).is_empty());
    }

    proptest::proptest! {
        /// Any text ranks against any tools without a panic, and every
        /// score is a number.
        #[test]
        fn any_text_ranks(task in "\\PC{0,80}", name in "\\PC{0,30}", description in "\\PC{0,80}") {
            let idx = ToolIndex::new(vec![IndexedTool::new(&name, &description, &[&task]), IndexedTool::default()]);
            for (_, score) in idx.search(&task, 3, |_| true) {
                proptest::prop_assert!(score.is_finite() && score > 0.0);
            }
        }
    }

    #[test]
    fn an_indexed_tool_travels_as_json() {
        let t = IndexedTool::new("get_weather", "Weather for a city.", &["city"]);
        let back: IndexedTool = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert!(t.words.windows(2).all(|w| w[0].0 < w[1].0), "sorted, for the lookup");
    }
}
