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

/// Words too common to say anything of a task or a tool (sorted: searched by halves).
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
    each_word(text, |w| out.push(w.to_string()));
    out
}

/// Calls `f` with each of `text`'s words (see [`words`]), without
/// allocating one string per word.
fn each_word(text: &str, mut f: impl FnMut(&str)) {
    let mut current = String::new();
    let mut previous: Option<char> = None;
    let mut push = |w: &mut String| {
        // A common word is dropped as it is written (`please`) or as its
        // stem (`uses` -> `use`).
        if !w.is_empty() && STOPWORDS.binary_search(&w.as_str()).is_err() {
            let word = stem(w);
            if word.chars().nth(1).is_some() && STOPWORDS.binary_search(&word).is_err() {
                f(word);
            }
        }
        w.clear();
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
        if c.is_ascii() {
            current.push(c.to_ascii_lowercase());
        } else {
            current.extend(c.to_lowercase());
        }
        previous = Some(c);
    }
    push(&mut current);
}

/// A word's stem, crudely, so that a word's forms meet: `files` and `file`,
/// `reading` and `read`, `queries` and `query`, `updated`, `updates` and
/// `update`, `matches` and `match`. Short words keep their endings (`bus`,
/// `is`, `time`).
fn stem(word: &mut String) -> &str {
    let long = |w: &str| w.chars().count() >= 5;
    if long(word) {
        if word.ends_with("ies") {
            word.truncate(word.len() - 3);
            word.push('y');
            return word;
        }
        let sibilant = ["sses", "xes", "zes", "ches", "shes"].iter().any(|s| word.ends_with(s));
        let suffixes: &[&str] = if sibilant { &["es"] } else { &["ing", "ed", "s"] };
        if !word.ends_with("ss") {
            if let Some(suffix) = suffixes.iter().find(|s| word.strip_suffix(**s).is_some_and(|b| b.chars().count() >= 3)) {
                word.truncate(word.len() - suffix.len());
            }
        }
    }
    if word.ends_with('e') && long(word) {
        word.pop();
    }
    word
}

/// What a tool's definition says, as text: its title and description,
/// and each argument's name and description (the top-level properties of
/// its input schema).
fn definition_texts(definition: &serde_json::Value) -> (String, Vec<&str>) {
    fn text(v: Option<&serde_json::Value>) -> &str {
        v.and_then(serde_json::Value::as_str).unwrap_or_default()
    }
    let mut prose = String::new();
    for part in [definition.get("title"), definition.get("annotations").and_then(|a| a.get("title")), definition.get("description")] {
        prose.push_str(text(part));
        prose.push('\n');
    }
    let mut arguments = Vec::new();
    if let Some(properties) = definition.get("inputSchema").and_then(|s| s.get("properties")).and_then(serde_json::Value::as_object) {
        for (argument, schema) in properties {
            arguments.push(argument.as_str());
            prose.push_str(text(schema.get("description")));
            prose.push('\n');
        }
    }
    (prose, arguments)
}

/// Builds a [`ToolIndex`], one tool at a time, in the order of the
/// configuration's tools (the control plane's side).
#[derive(Debug, Default)]
pub struct IndexBuilder {
    ids: HashMap<String, u32, std::hash::BuildHasherDefault<Fnv>>,
    words: Vec<String>,
    tools: Vec<Vec<u32>>,
}

impl IndexBuilder {
    /// A tool's postings: (word id, count) pairs, by word id, flattened.
    fn postings(&mut self, name: &str, description: &str, arguments: &[&str]) -> Vec<u32> {
        let mut all: Vec<(u32, u32)> = Vec::new();
        let (ids, words) = (&mut self.ids, &mut self.words);
        let mut add = |text: &str, weight: u32| {
            each_word(text, |w| {
                let id = match ids.get(w) {
                    Some(id) => *id,
                    None => {
                        let id = u32::try_from(words.len()).unwrap_or(u32::MAX);
                        ids.insert(w.to_string(), id);
                        words.push(w.to_string());
                        id
                    }
                };
                all.push((id, weight));
            })
        };
        add(name, u32::from(NAME_WEIGHT));
        add(description, 1);
        for a in arguments {
            add(a, u32::from(ARGUMENT_WEIGHT));
        }
        all.sort_unstable();
        let mut out: Vec<u32> = Vec::with_capacity(all.len() * 2);
        for (id, weight) in all {
            match out.len().checked_sub(2).and_then(|at| out.get(at..)) {
                Some([last, _]) if *last == id => {
                    if let Some(n) = out.last_mut() {
                        *n = n.saturating_add(weight);
                    }
                }
                _ => out.extend([id, weight]),
            }
        }
        out
    }

    /// Adds a tool from its name, description and argument names.
    pub fn push(&mut self, name: &str, description: &str, arguments: &[&str]) {
        let postings = self.postings(name, description, arguments);
        self.tools.push(postings);
    }

    /// Adds a tool from its definition as listed (`name` is the name the
    /// gateway exposes).
    pub fn push_definition(&mut self, name: &str, definition: &serde_json::Value) {
        let (prose, arguments) = definition_texts(definition);
        self.push(name, &prose, &arguments);
    }

    /// Puts a tool from its definition in the place of tool `at`.
    pub fn replace_definition(&mut self, at: usize, name: &str, definition: &serde_json::Value) {
        let (prose, arguments) = definition_texts(definition);
        let postings = self.postings(name, &prose, &arguments);
        if let Some(slot) = self.tools.get_mut(at) {
            *slot = postings;
        }
    }

    /// The index: words sorted (ids renumbered to match), each word's
    /// frequency, the average length. Words only replaced tools had stay in
    /// the vocabulary with frequency 0, which changes no score.
    pub fn finish(self) -> ToolIndex {
        let IndexBuilder { words, mut tools, .. } = self;
        let mut order: Vec<u32> = (0..u32::try_from(words.len()).unwrap_or(u32::MAX)).collect();
        order.sort_unstable_by(|a, b| words.get(*a as usize).cmp(&words.get(*b as usize)));
        // renumber[old id] = new id.
        let mut renumber = vec![0u32; words.len()];
        for (new, old) in order.iter().enumerate() {
            if let Some(slot) = renumber.get_mut(*old as usize) {
                *slot = u32::try_from(new).unwrap_or(u32::MAX);
            }
        }
        let mut frequency = vec![0u32; words.len()];
        let mut total = 0u64;
        for postings in &mut tools {
            let mut pairs: Vec<(u32, u32)> = postings
                .chunks_exact(2)
                .filter_map(|p| if let [id, count] = p { Some((renumber.get(*id as usize).copied().unwrap_or(0), *count)) } else { None })
                .collect();
            pairs.sort_unstable();
            postings.clear();
            for (id, count) in pairs {
                if let Some(f) = frequency.get_mut(id as usize) {
                    *f += 1;
                }
                total += u64::from(count);
                postings.extend([id, count]);
            }
        }
        let mut words = words;
        let mut sorted: Vec<String> = Vec::with_capacity(words.len());
        for old in order {
            sorted.push(words.get_mut(old as usize).map(std::mem::take).unwrap_or_default());
        }
        let average_len = if tools.is_empty() { 0.0 } else { total as f32 / tools.len() as f32 };
        ToolIndex { words: sorted, frequency, tools, average_len }
    }
}

/// FNV-1a: the vocabulary's hash. Its keys are short words from the
/// servers' own definitions, which the control plane indexes once per
/// compile; nothing an anonymous caller sends is hashed with it.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// How much the words of a task's context weigh against the task's own.
const CONTEXT_WEIGHT: f32 = 0.5;
/// The most distinct words of a query that count: a task is a sentence,
/// and past this a query would cost each search more without ranking better.
pub const MAX_QUERY_WORDS: usize = 64;

/// A task's words, each with its weight: 1 for the task's, less for the
/// words only its context holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    words: Vec<(String, f32)>,
}

impl Query {
    pub fn new(task: &str, context: &str) -> Query {
        let mut words: Vec<(String, f32)> = Vec::new();
        for (text, weight) in [(task, 1.0), (context, CONTEXT_WEIGHT)] {
            each_word(text, |w| {
                if words.len() < MAX_QUERY_WORDS && !words.iter().any(|(k, _)| k == w) {
                    words.push((w.to_string(), weight));
                }
            });
        }
        Query { words }
    }

    /// Whether it has no word that could match (only common words, or none).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// Every tool's words, in the order of the configuration's tools, and the
/// figures BM25 needs of the whole: computed by the control plane when it
/// compiles the catalog ([`IndexBuilder`]), shipped in the filter's
/// configuration. Words are numbered so that each tool's postings are
/// numbers, which the filter reads without a string per word.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolIndex {
    /// Every word, sorted: a word's id is its place here.
    pub words: Vec<String>,
    /// In how many tools each word appears.
    pub frequency: Vec<u32>,
    /// Each tool's (word id, count) pairs, by word id, flattened.
    pub tools: Vec<Vec<u32>>,
    /// The average of the tools' weighted word counts.
    pub average_len: f32,
}

impl ToolIndex {
    /// The tools that fit `query`, best first, at most `limit`, among those
    /// `visible` lets through (the caller's authorization): each tool's
    /// index and score. Tools that share no word with the query are left
    /// out; equal scores keep the configuration's order.
    pub fn search(&self, query: &Query, limit: usize, visible: impl Fn(usize) -> bool) -> Vec<(usize, f32)> {
        let n = self.tools.len() as f32;
        // The query's words the index knows, by id, with their weights.
        let weights: Vec<(u32, f32)> = query
            .words
            .iter()
            .filter_map(|(w, weight)| {
                let id = self.words.binary_search_by(|k| k.as_str().cmp(w)).ok()?;
                let df = self.frequency.get(id).copied().unwrap_or(0) as f32;
                Some((u32::try_from(id).ok()?, weight * ((n - df + 0.5) / (df + 0.5) + 1.0).ln()))
            })
            .collect();
        if weights.is_empty() {
            return Vec::new();
        }
        // By id, so that each of a tool's words is looked up in log time.
        let mut weights = weights;
        weights.sort_unstable_by_key(|(id, _)| *id);
        let weight_of = |id: u32| weights.binary_search_by_key(&id, |(w, _)| *w).ok().and_then(|at| weights.get(at)).map(|(_, idf)| *idf);
        let average = if self.average_len.is_finite() { self.average_len.max(1.0) } else { 1.0 };
        let mut scored: Vec<(usize, f32)> = self
            .tools
            .iter()
            .enumerate()
            .filter_map(|(i, postings)| {
                let pairs = || postings.chunks_exact(2).filter_map(|p| if let [id, count] = p { Some((*id, *count as f32)) } else { None });
                if !pairs().any(|(id, _)| weight_of(id).is_some()) || !visible(i) {
                    return None;
                }
                let len: f32 = pairs().map(|(_, c)| c).sum();
                let norm = K1 * (1.0 - B + B * len / average);
                let score: f32 = pairs().filter_map(|(id, tf)| weight_of(id).map(|idf| idf * tf * (K1 + 1.0) / (tf + norm))).sum();
                (score > 0.0 && score.is_finite()).then_some((i, score))
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
        assert_eq!(words("Please read it"), ["read"], "a common word is dropped before its stem is taken");
        let long: String = (0..500).map(|i| format!("word{i}x ")).collect();
        assert_eq!(Query::new(&long, "").words.len(), MAX_QUERY_WORDS, "a query counts its first words only");
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

    fn build(tools: &[(&str, &str, &[&str])]) -> ToolIndex {
        let mut b = IndexBuilder::default();
        for (name, description, arguments) in tools {
            b.push(name, description, arguments);
        }
        b.finish()
    }

    fn index() -> ToolIndex {
        build(&[
            ("fs__read_text_file", "Read the complete contents of a file as text.", &["path", "head", "tail"]),
            ("fs__list_directory", "Get a detailed listing of all files and directories in a specified path.", &["path"]),
            ("time__get_current_time", "Get current time in a specific timezone.", &["timezone"]),
            ("echo__echo", "Echoes back the input.", &["text"]),
            ("everything__add", "Adds two numbers.", &["a", "b"]),
        ])
    }

    #[test]
    fn the_tool_a_person_would_pick_comes_first() {
        let idx = index();
        let first = |task: &str| idx.search(&Query::new(task, ""), 5, |_| true).first().map(|(i, _)| *i);
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
        let all = idx.search(&Query::new("file directory path", ""), 5, |_| true);
        assert_eq!(all.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 0]);
        assert!(all.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(idx.search(&Query::new("file directory path", ""), 1, |_| true).len(), 1);
        assert_eq!(idx.search(&Query::new("file directory path", ""), 5, |i| i != 1).iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0]);
        assert!(build(&[]).search(&Query::new("anything", ""), 5, |_| true).is_empty());
    }

    proptest::proptest! {
        /// Any text ranks against any tools without a panic, and every
        /// score is a number.
        #[test]
        fn any_text_ranks(task in "\\PC{0,80}", name in "\\PC{0,30}", description in "\\PC{0,80}") {
            let idx = build(&[(&name, &description, &[&task]), ("", "", &[])]);
            for (_, score) in idx.search(&Query::new(&task, &description), 3, |_| true) {
                proptest::prop_assert!(score.is_finite() && score > 0.0);
            }
        }
    }

    #[test]
    fn the_index_travels_as_json_with_words_sorted_and_counted() {
        let mut b = IndexBuilder::default();
        b.push("weather__forecast", "Weather for a city.", &["city"]);
        b.push("maps__city_map", "A map.", &["city"]);
        b.push("gone", "replaced", &[]);
        b.replace_definition(
            2,
            "news__headlines",
            &serde_json::json!({"description": "Today's news", "inputSchema": {"properties": {"topic": {"description": "a subject"}}}}),
        );
        let idx = b.finish();
        let back: ToolIndex = serde_json::from_str(&serde_json::to_string(&idx).unwrap()).unwrap();
        assert_eq!(back, idx);
        assert!(idx.words.windows(2).all(|w| w[0] < w[1]), "sorted, for the lookup");
        let id = |w: &str| idx.words.iter().position(|k| k == w).unwrap() as u32;
        // weather: name 3 + description 1; city: argument 2 + description 1.
        assert_eq!(idx.tools[0], {
            let mut p = [[id("city"), 3], [id("forecast"), 3], [id("weather"), 4]];
            p.sort();
            p.concat()
        });
        assert_eq!(idx.frequency[id("city") as usize], 2);
        assert_eq!(idx.frequency[id("gone") as usize], 0, "a replaced tool's words count for nothing");
        assert!(idx.tools[2].chunks(2).any(|p| p[0] == id("subject")), "arguments' descriptions count");
        assert_eq!(idx.search(&Query::new("today's headlines", ""), 5, |_| true)[0].0, 2);
    }
}
