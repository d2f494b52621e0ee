//! Loading rule files: YAML documents to a validated [`RuleSet`].
//!
//! A rule file contains one rule per YAML document (documents are separated by `---` lines). A
//! directory is read recursively, `.yaml` and `.yml` files in path order. Loading never stops at
//! the first problem: every file is read and every error is returned, each naming the file, the
//! line, the field and a correct example, so one `rules check` run lists all that needs fixing.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::compile::{Rule, RuleIssue};
use crate::schema::{RuleSpec, RULE_FIELDS};

/// The rules loaded from a set of files, in load order, with unique ids.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    origins: Vec<Origin>,
}

/// The file and line a rule was defined at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The rule file.
    pub file: PathBuf,
    /// 1-based line of the rule's first line.
    pub line: usize,
}

/// A rule file problem, located.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    /// The file at fault.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The rule's id, when it could be read.
    pub rule_id: Option<String>,
    /// The field at fault, when known.
    pub field: Option<String>,
    /// The problem, naming the value.
    pub message: String,
    /// A correct example, when one helps.
    pub example: Option<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(id) = &self.rule_id {
            write!(f, "rule `{id}`: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(example) = &self.example {
            write!(f, "\n  example: {example}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// Every problem found while loading, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl RuleSet {
    /// Loads every rule file under the given files and directories.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, LoadErrors> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            if let Err(err) = collect_files(path, &mut files) {
                errors.push(*err);
            }
        }
        if files.is_empty() && errors.is_empty() {
            errors.push(LoadError {
                file: paths.first().cloned().unwrap_or_default(),
                line: None,
                rule_id: None,
                field: None,
                message: "no rule files (*.yaml, *.yml) found".to_string(),
                example: None,
            });
        }

        // The same file reached twice (`rules check a a`, or a link to it) is read once.
        let mut seen = std::collections::BTreeSet::new();
        files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));

        let mut set = RuleSet::default();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => set.add_text(
                    &file,
                    text.strip_prefix('\u{feff}').unwrap_or(&text),
                    &mut errors,
                ),
                Err(err) => errors.push(LoadError {
                    file: file.clone(),
                    line: None,
                    rule_id: None,
                    field: None,
                    message: format!("failed to read rule file: {err}"),
                    example: None,
                }),
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// Parses rules from text as if read from `file`.
    pub fn from_text(file: &Path, text: &str) -> Result<RuleSet, LoadErrors> {
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        set.add_text(file, text, &mut errors);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// Moves the rules of `other` into this set, reporting ids used in both.
    pub fn extend(&mut self, other: RuleSet, errors: &mut Vec<LoadError>) {
        for (rule, origin) in other.rules.into_iter().zip(other.origins) {
            if let Some(i) = self.rules.iter().position(|r| r.id == rule.id) {
                errors.push(duplicate_error(&origin, &rule.id, &self.origins[i]));
                continue;
            }
            self.rules.push(rule);
            self.origins.push(origin);
        }
    }

    /// Returns the rules in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Returns where each rule was defined, in the same order as [`RuleSet::rules`].
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    /// Returns the number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Returns true when no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn add_text(&mut self, file: &Path, text: &str, errors: &mut Vec<LoadError>) {
        for doc in split_documents(text) {
            if doc.text.trim_start().is_empty() || is_only_comments(doc.text) {
                continue;
            }
            let spec: RuleSpec = match serde_norway::from_str(doc.text) {
                Ok(spec) => spec,
                Err(err) => {
                    errors.push(parse_error(file, &doc, &err));
                    continue;
                }
            };
            let line = first_content_line(doc.text) + doc.first_line;
            match Rule::compile(&spec) {
                Ok(rule) => {
                    let origin = Origin {
                        file: file.to_path_buf(),
                        line,
                    };
                    if let Some(i) = self.rules.iter().position(|r| r.id == rule.id) {
                        errors.push(duplicate_error(&origin, &rule.id, &self.origins[i]));
                        continue;
                    }
                    self.rules.push(rule);
                    self.origins.push(origin);
                }
                Err(issue) => errors.push(issue_error(file, &doc, &spec.id, issue)),
            }
        }
    }
}

fn duplicate_error(origin: &Origin, id: &str, first: &Origin) -> LoadError {
    LoadError {
        file: origin.file.clone(),
        line: Some(origin.line),
        rule_id: Some(id.to_string()),
        field: Some("id".to_string()),
        message: format!(
            "id is already used at {}:{}; ids must be unique",
            first.file.display(),
            first.line
        ),
        example: None,
    }
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), Box<LoadError>> {
    let mut visited = std::collections::BTreeSet::new();
    collect_files_in(path, files, &mut visited, true)
}

/// Walks `path`, skipping folders already visited (symbolic link loops) and anything that is
/// not a regular file, such as a FIFO that would block the read forever.
fn collect_files_in(
    path: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut std::collections::BTreeSet<PathBuf>,
    named: bool,
) -> Result<(), Box<LoadError>> {
    let io_error = |err: std::io::Error| {
        Box::new(LoadError {
            file: path.to_path_buf(),
            line: None,
            rule_id: None,
            field: None,
            message: format!("failed to read rules path: {err}"),
            example: None,
        })
    };
    let meta = std::fs::metadata(path).map_err(io_error)?;
    if meta.is_file() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    if !meta.is_dir() {
        if named {
            return Err(io_error(std::io::Error::other(
                "not a regular file or folder",
            )));
        }
        return Ok(());
    }
    let canonical = path.canonicalize().map_err(io_error)?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io_error)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let is_rule_file = matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if entry.is_dir() || is_rule_file {
            collect_files_in(&entry, files, visited, false)?;
        }
    }
    Ok(())
}

/// One YAML document of a file and the file line it starts on (0-based offset).
struct Document<'a> {
    text: &'a str,
    first_line: usize,
}

fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 0;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        let is_separator = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if is_separator {
            docs.push(Document {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset + line.len();
            start_line = i + 1;
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        first_line: start_line,
    });
    docs
}

fn is_only_comments(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

/// Returns the 1-based line, within a document, of its first line that is not blank or a comment.
fn first_content_line(text: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        })
        .map_or(1, |i| i + 1)
}

fn parse_error(file: &Path, doc: &Document<'_>, err: &serde_norway::Error) -> LoadError {
    let line = err.location().map(|loc| loc.line() + doc.first_line);
    let message = err.to_string();
    // The location is already reported on its own; keep the message to the cause.
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    let (field, hint) = unknown_field_hint(&message);
    let rule_id = peek_id(doc.text);
    LoadError {
        file: file.to_path_buf(),
        line,
        rule_id,
        field,
        message: match hint {
            Some(hint) => format!("{message}; did you mean `{hint}`?"),
            None => message,
        },
        example: None,
    }
}

/// Finds the unknown field in a serde message and the closest valid top-level field.
fn unknown_field_hint(message: &str) -> (Option<String>, Option<&'static str>) {
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return (None, None);
    };
    let Some(name) = rest.split('`').next() else {
        return (None, None);
    };
    let expected: Vec<&str> = rest
        .split("expected one of ")
        .nth(1)
        .map(|list| {
            list.split(", ")
                .map(|s| s.trim_matches(|c| c == '`' || c == ' '))
                .collect()
        })
        .unwrap_or_default();
    let hint = RULE_FIELDS
        .iter()
        .chain(crate::event::FIELD_NAMES.iter())
        .filter(|candidate| expected.is_empty() || expected.contains(candidate))
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, candidate)| candidate);
    (Some(name.to_string()), hint)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cost = usize::from(ca != b[j]);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn peek_id(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let value = l.strip_prefix("id:")?.trim();
        (!value.is_empty()).then(|| value.trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

fn issue_error(file: &Path, doc: &Document<'_>, id: &str, issue: RuleIssue) -> LoadError {
    let line = locate_field(doc.text, &issue.field) + doc.first_line;
    LoadError {
        file: file.to_path_buf(),
        line: Some(line),
        rule_id: Some(id.to_string()),
        field: Some(issue.field),
        message: issue.message,
        example: Some(issue.example),
    }
}

/// Returns the 1-based line in `text` where the dotted field path is written, falling back to
/// the closest enclosing key that can be found.
fn locate_field(text: &str, path: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let mut line = first_content_line(text) - 1;
    let mut from = 0;
    for part in path.split('.') {
        let key = part.split('[').next().unwrap_or(part);
        let index = part
            .split('[')
            .nth(1)
            .and_then(|i| i.trim_end_matches(']').parse::<usize>().ok());
        let found = lines
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, l)| contains_key(l, key));
        match found {
            Some((i, _)) => {
                line = i;
                from = i;
            }
            None => break,
        }
        // A list item on its own lines: step to the index-th `- ` entry below the key.
        if let Some(index) = index {
            let items: Vec<usize> = lines
                .iter()
                .enumerate()
                .skip(line + 1)
                .take_while(|(_, l)| l.trim_start().starts_with('-') || l.starts_with(' '))
                .filter(|(_, l)| l.trim_start().starts_with("- "))
                .map(|(i, _)| i)
                .collect();
            if let Some(&item) = items.get(index) {
                line = item;
                from = item;
            }
        }
    }
    line + 1
}

fn contains_key(line: &str, key: &str) -> bool {
    let code = line.split(" #").next().unwrap_or(line);
    let mut rest = code;
    while let Some(i) = rest.find(key) {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + key.len()..];
        let boundary = before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '-' | '\t'));
        if boundary && after.starts_with(':') {
            return true;
        }
        rest = &rest[i + key.len()..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RuleSet, LoadErrors> {
        RuleSet::from_text(Path::new("pack.yaml"), text)
    }

    const GOOD: &str = "\
id: burst
title: Burst
severity: high
stages: [operate]
group_by: [client]
window: {size: 1m}
threshold: {count: 5}
";

    #[test]
    fn load_two_documents() {
        let text = format!("# a pack\n{GOOD}---\n{}", GOOD.replace("burst", "burst-2"));
        let set = load(&text).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.origins()[0].line, 2);
        assert_eq!(set.origins()[1].line, 10);
    }

    #[test]
    fn misspelt_field_names_line_and_hint() {
        let text = format!(
            "{GOOD}---\n{}",
            GOOD.replace("burst", "b2").replace("window:", "windw:")
        );
        let errors = load(&text).unwrap_err().0;
        assert_eq!(errors.len(), 1);
        let err = &errors[0];
        assert_eq!(err.line, Some(14));
        assert_eq!(err.field.as_deref(), Some("windw"));
        assert_eq!(err.rule_id.as_deref(), Some("b2"));
        assert!(
            err.message.contains("did you mean `window`?"),
            "{}",
            err.message
        );
        assert!(
            err.to_string()
                .starts_with("pack.yaml:14: rule `b2`: field `windw`: unknown field `windw`"),
            "{err}"
        );
    }

    #[test]
    fn misspelt_match_field_is_rejected() {
        let text = GOOD.replace("group_by: [client]", "match:\n  stauts: 401");
        let err = &load(&text).unwrap_err().0[0];
        assert_eq!(err.line, Some(6));
        assert_eq!(err.field.as_deref(), Some("stauts"));
        assert!(
            err.message.contains("did you mean `status`?"),
            "{}",
            err.message
        );
    }

    #[test]
    fn validation_error_names_line_and_example() {
        let text = GOOD.replace("{size: 1m}", "\n  size: 5m\n  slide: 2m");
        let err = &load(&text).unwrap_err().0[0];
        assert_eq!(err.field.as_deref(), Some("window.slide"));
        assert_eq!(err.line, Some(8));
        assert_eq!(
            err.example.as_deref(),
            Some("window: {size: 10m, slide: 1m}")
        );
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let text = format!("{GOOD}---\n{GOOD}");
        let err = &load(&text).unwrap_err().0[0];
        assert_eq!(err.line, Some(9));
        assert_eq!(
            err.message,
            "id is already used at pack.yaml:1; ids must be unique"
        );
    }

    #[test]
    fn locate_list_items() {
        let text = "id: x\nsignature:\n  patterns:\n    - name: a\n      regex: a\n    - name: b\n      regex: '('\n";
        assert_eq!(locate_field(text, "signature.patterns[1].regex"), 7);
    }
}
