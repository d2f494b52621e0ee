//! Jira's two rich-text formats, built from one small document model.
//!
//! Jira Cloud's REST v3 takes descriptions and comments as Atlassian Document Format (ADF): a
//! JSON tree of block nodes (`paragraph`, `heading`, `bulletList`, `table`, `codeBlock`) whose
//! leaves are `text` nodes with optional marks. Jira Data Center's REST v2 takes wiki markup
//! (`h3.`, `* item`, `||header||`, `|cell|`, `{code}`). A receiver builds a [`Document`] once
//! and serializes it for the flavour it talks to, so both flavours show the same content.
//!
//! Evidence comes from the traffic, so an attacker chooses part of it. ADF carries text as
//! data and needs no escaping; wiki markup would turn `[link]`, `!image!` or `|` into links,
//! embedded images or broken tables, so every text goes through [`wiki_escape`]. Sizes are
//! measured on the serialized form, see [`Document::size`].

use std::fmt::Write as _;

use serde_json::{json, Value};

/// Inline content of a paragraph, list item or heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inline {
    /// Plain text.
    Text(String),
    /// Bold text.
    Strong(String),
    /// Monospaced text.
    Code(String),
}

/// One block of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A level-3 heading.
    Heading(String),
    /// A paragraph of inline content.
    Paragraph(Vec<Inline>),
    /// A bulleted list, one item of inline content each.
    Bullets(Vec<Vec<Inline>>),
    /// A table with a header row; every cell is shown monospaced.
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A preformatted code block.
    Code(String),
}

/// The rich-text format of a Jira API flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Atlassian Document Format, for Jira Cloud REST v3.
    Adf,
    /// Wiki markup, for Jira Data Center REST v2.
    Wiki,
}

/// A description or comment body before serialization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// The blocks in reading order.
    pub blocks: Vec<Block>,
}

impl Document {
    /// Appends a block.
    pub fn push(&mut self, block: Block) {
        self.blocks.push(block);
    }

    /// Serializes the document: an ADF `doc` node, or a wiki markup string.
    pub fn to_value(&self, format: Format) -> Value {
        match format {
            Format::Adf => self.to_adf(),
            Format::Wiki => Value::String(self.to_wiki()),
        }
    }

    /// Returns the size Jira's text limit is checked against, in characters.
    ///
    /// For wiki markup this is the markup's length. For ADF it is the length of the compact
    /// JSON, which is larger than the visible text.
    // NOTE: Jira Cloud documents a 32,767-character limit for these fields but not whether it
    // counts the ADF JSON or only its text. The JSON is the larger, so a document that fits
    // here fits either way.
    pub fn size(&self, format: Format) -> usize {
        match format {
            Format::Adf => self.to_adf().to_string().chars().count(),
            Format::Wiki => self.to_wiki().chars().count(),
        }
    }

    /// Returns the ADF `doc` node.
    pub fn to_adf(&self) -> Value {
        let content: Vec<Value> = self.blocks.iter().map(adf_block).collect();
        json!({"type": "doc", "version": 1, "content": content})
    }

    /// Returns the wiki markup, blocks separated by blank lines.
    pub fn to_wiki(&self) -> String {
        let blocks: Vec<String> = self.blocks.iter().map(wiki_block).collect();
        blocks.join("\n\n")
    }
}

fn adf_block(block: &Block) -> Value {
    match block {
        Block::Heading(text) => json!({
            "type": "heading",
            "attrs": {"level": 3},
            "content": adf_inlines(&[Inline::Text(text.clone())]),
        }),
        Block::Paragraph(inlines) => adf_paragraph(inlines),
        Block::Bullets(items) => {
            let items: Vec<Value> = items
                .iter()
                .map(|item| json!({"type": "listItem", "content": [adf_paragraph(item)]}))
                .collect();
            json!({"type": "bulletList", "content": items})
        }
        Block::Table { header, rows } => adf_table(header, rows),
        Block::Code(text) => {
            json!({"type": "codeBlock", "content": adf_inlines(&[Inline::Text(text.clone())])})
        }
    }
}

fn adf_paragraph(inlines: &[Inline]) -> Value {
    json!({"type": "paragraph", "content": adf_inlines(inlines)})
}

/// Returns ADF text nodes. ADF forbids empty text nodes, so empty texts are left out.
fn adf_inlines(inlines: &[Inline]) -> Vec<Value> {
    inlines
        .iter()
        .filter_map(|inline| {
            let (text, mark) = match inline {
                Inline::Text(text) => (text, None),
                Inline::Strong(text) => (text, Some("strong")),
                Inline::Code(text) => (text, Some("code")),
            };
            if text.is_empty() {
                return None;
            }
            Some(match mark {
                None => json!({"type": "text", "text": text}),
                Some(mark) => json!({"type": "text", "text": text, "marks": [{"type": mark}]}),
            })
        })
        .collect()
}

fn adf_table(header: &[String], rows: &[Vec<String>]) -> Value {
    let cell = |kind: &str, text: &str, inline: Inline| {
        let content = if text.is_empty() {
            Vec::new()
        } else {
            adf_inlines(&[inline])
        };
        json!({"type": kind, "content": [{"type": "paragraph", "content": content}]})
    };
    let mut table_rows = vec![json!({
        "type": "tableRow",
        "content": header
            .iter()
            .map(|text| cell("tableHeader", text, Inline::Strong(text.clone())))
            .collect::<Vec<_>>(),
    })];
    for row in rows {
        table_rows.push(json!({
            "type": "tableRow",
            "content": row
                .iter()
                .map(|text| cell("tableCell", text, Inline::Code(text.clone())))
                .collect::<Vec<_>>(),
        }));
    }
    json!({
        "type": "table",
        "attrs": {"isNumberColumnEnabled": false},
        "content": table_rows,
    })
}

fn wiki_block(block: &Block) -> String {
    match block {
        Block::Heading(text) => format!("h3. {}", wiki_escape(&one_line(text))),
        Block::Paragraph(inlines) => wiki_inlines(inlines),
        Block::Bullets(items) => items
            .iter()
            .map(|item| format!("* {}", wiki_inlines(item).replace('\n', " ")))
            .collect::<Vec<_>>()
            .join("\n"),
        Block::Table { header, rows } => wiki_table(header, rows),
        // `{code}` ends the block wherever it appears, so a space keeps it literal.
        Block::Code(text) => format!("{{code}}\n{}\n{{code}}", text.replace("{code", "{ code")),
    }
}

fn wiki_inlines(inlines: &[Inline]) -> String {
    let mut out = String::new();
    for inline in inlines {
        match inline {
            Inline::Text(text) => out.push_str(&wiki_escape(text)),
            Inline::Strong(text) if !text.is_empty() => {
                write!(out, "*{}*", wiki_escape(&one_line(text)))
                    .expect("writing to a String cannot fail");
            }
            Inline::Code(text) if !text.is_empty() => {
                write!(out, "{{{{{}}}}}", wiki_escape(&one_line(text)))
                    .expect("writing to a String cannot fail");
            }
            Inline::Strong(_) | Inline::Code(_) => {}
        }
    }
    out
}

fn wiki_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::from("||");
    for name in header {
        write!(out, "{}||", wiki_escape(&one_line(name))).expect("writing to a String cannot fail");
    }
    for row in rows {
        out.push_str("\n|");
        for cell in row {
            let cell = one_line(cell);
            // An empty cell needs a space, or the two bars merge into a header separator.
            if cell.is_empty() {
                out.push_str(" |");
            } else {
                write!(out, "{{{{{}}}}}|", wiki_escape(&cell))
                    .expect("writing to a String cannot fail");
            }
        }
    }
    out
}

/// Replaces line breaks with spaces, because headings, table cells and list items are one line.
fn one_line(text: &str) -> String {
    text.replace("\r\n", " ").replace(['\r', '\n'], " ")
}

/// Escapes text for Jira wiki markup so it shows as written.
///
/// A backslash before a markup character makes it literal. Characters that start links,
/// images, macros, tables, lists and text effects are escaped everywhere. A `-` is escaped
/// only next to a space or the text's ends, where it could open or close a strike-through, so
/// dates and paths stay readable. A backslash itself becomes the `&#92;` entity, because two backslashes
/// are a line break in wiki markup.
pub fn wiki_escape(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '\\' => out.push_str("&#92;"),
            '{' | '}' | '[' | ']' | '|' | '!' | '*' | '_' | '+' | '^' | '~' | '?' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '-' => {
                let before = i.checked_sub(1).map(|j| chars[j]);
                let after = chars.get(i + 1).copied();
                let at_edge =
                    before.is_none_or(char::is_whitespace) || after.is_none_or(char::is_whitespace);
                if at_edge {
                    out.push('\\');
                }
                out.push('-');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Document {
        Document {
            blocks: vec![
                Block::Heading("Finding".into()),
                Block::Paragraph(vec![Inline::Text("Seen again.".into())]),
                Block::Bullets(vec![vec![
                    Inline::Strong("Rule:".into()),
                    Inline::Text(" ".into()),
                    Inline::Text("login".into()),
                ]]),
                Block::Code("count >= 20".into()),
                Block::Table {
                    header: vec!["time".into(), "request".into()],
                    rows: vec![vec!["10:00".into(), String::new()]],
                },
            ],
        }
    }

    #[test]
    fn adf_builds_typed_nodes() {
        let adf = sample().to_adf();
        assert_eq!(adf["type"], "doc");
        assert_eq!(adf["version"], 1);
        let content = adf["content"].as_array().unwrap();
        assert_eq!(
            content[0],
            json!({"type": "heading", "attrs": {"level": 3}, "content": [{"type": "text", "text": "Finding"}]})
        );
        assert_eq!(
            content[2],
            json!({"type": "bulletList", "content": [{"type": "listItem", "content": [{"type": "paragraph", "content": [
                {"type": "text", "text": "Rule:", "marks": [{"type": "strong"}]},
                {"type": "text", "text": " "},
                {"type": "text", "text": "login"}
            ]}]}]})
        );
        assert_eq!(
            content[3],
            json!({"type": "codeBlock", "content": [{"type": "text", "text": "count >= 20"}]})
        );
        let row = &content[4]["content"][1]["content"];
        assert_eq!(
            row[0],
            json!({"type": "tableCell", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "10:00", "marks": [{"type": "code"}]}]}]})
        );
        // An empty cell contains an empty paragraph, never an empty text node.
        assert_eq!(
            row[1],
            json!({"type": "tableCell", "content": [{"type": "paragraph", "content": []}]})
        );
    }

    #[test]
    fn wiki_renders_markup() {
        assert_eq!(
            sample().to_wiki(),
            "h3. Finding\n\nSeen again.\n\n* *Rule:* login\n\n{code}\ncount >= 20\n{code}\n\n||time||request||\n|{{10:00}}| |"
        );
    }

    #[test]
    fn wiki_escape_neutralizes_markup() {
        assert_eq!(
            wiki_escape("[x|http://evil] !http://evil/a.png! {noformat} a|b"),
            "\\[x\\|http://evil\\] \\!http://evil/a.png\\! \\{noformat\\} a\\|b"
        );
        assert_eq!(
            wiki_escape("2026-12-04 -gone- a\\b"),
            "2026-12-04 \\-gone\\- a&#92;b"
        );
        assert_eq!(wiki_escape("*bold* _em_"), "\\*bold\\* \\_em\\_");
    }

    #[test]
    fn wiki_code_block_cannot_be_closed_early() {
        let doc = Document {
            blocks: vec![Block::Code("a {code} b".into())],
        };
        assert_eq!(doc.to_wiki(), "{code}\na { code} b\n{code}");
    }

    #[test]
    fn size_counts_serialized_characters() {
        let doc = Document {
            blocks: vec![Block::Paragraph(vec![Inline::Text("é".repeat(10))])],
        };
        assert_eq!(doc.size(Format::Wiki), 10);
        assert_eq!(
            doc.size(Format::Adf),
            doc.to_adf().to_string().chars().count()
        );
        assert!(doc.size(Format::Adf) > 10);
    }
}
