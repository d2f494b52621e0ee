//! What the Jira receiver writes: issue descriptions and comments, fitted to Jira's limit.
//!
//! Jira rejects a description or comment over 32,767 characters, and a rejected create leaves
//! the finding without an issue. Each text is therefore built in parts with their own caps (the intro,
//! each fact, each evidence cell), and when the whole still does not fit, evidence rows are
//! left out from the end with a note saying how many. Callers pass a finding that is already
//! redacted.

use feedloop_pipeline::Finding;

use super::document::{Block, Document, Format, Inline};
use crate::delivery::render;
use crate::delivery::{Notice, Rendering};

/// Jira's limit for a description or comment, in characters.
pub const TEXT_MAX_CHARS: usize = 32_767;

/// The maximum intro length in characters. A longer intro is cut with a note.
const INTRO_MAX_CHARS: usize = 8_000;

/// The maximum length of a fact value in characters, such as a long group.
const FACT_MAX_CHARS: usize = 1_000;

/// The maximum length of an evidence cell in characters, such as a long request path.
const CELL_MAX_CHARS: usize = 500;

/// The text length of the last-resort body. JSON escaping grows a character to at most six,
/// so even an ADF body of this much text stays under [`TEXT_MAX_CHARS`].
const LAST_RESORT_CHARS: usize = 4_000;

/// Returns the description of a new issue: the intro, the facts, the condition and evidence.
pub fn description(
    notice: &Notice,
    finding: &Finding,
    intro: Option<&str>,
    rendering: Rendering,
    format: Format,
) -> Document {
    let lead: Vec<Block> = intro.map(paragraphs).unwrap_or_default();
    match rendering {
        Rendering::Full => fit(notice, finding, &lead, true, format),
        Rendering::Minimal => minimal(notice, finding, &lead, format),
    }
}

/// Returns a comment: `lead` as its first paragraph, then the facts, then the evidence when
/// `with_evidence` is set and the rendering is full.
pub fn comment(
    notice: &Notice,
    finding: &Finding,
    lead: &str,
    with_evidence: bool,
    rendering: Rendering,
    format: Format,
) -> Document {
    let lead = paragraphs(lead);
    match rendering {
        Rendering::Full => fit(notice, finding, &lead, with_evidence, format),
        Rendering::Minimal => minimal(notice, finding, &lead, format),
    }
}

/// Splits text into paragraphs at blank lines, after capping its length.
fn paragraphs(text: &str) -> Vec<Block> {
    render::truncate(text, INTRO_MAX_CHARS)
        .split("\n\n")
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| Block::Paragraph(vec![Inline::Text(part.to_string())]))
        .collect()
}

/// Builds the full body with as many evidence rows as fit.
fn fit(
    notice: &Notice,
    finding: &Finding,
    lead: &[Block],
    with_evidence: bool,
    format: Format,
) -> Document {
    let rows: Vec<Vec<String>> = if with_evidence {
        render::evidence_rows(finding)
            .into_iter()
            .map(|row| {
                row.iter()
                    .map(|cell| render::truncate(cell, CELL_MAX_CHARS))
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    let build = |included: usize| full(notice, finding, lead, &rows, included);
    let all = build(rows.len());
    if all.size(format) <= TEXT_MAX_CHARS {
        return all;
    }
    if build(0).size(format) > TEXT_MAX_CHARS {
        return last_resort(notice, finding);
    }
    // Binary search for the maximum row count that fits: `fits` always fits, `too_many` never does.
    let (mut fits, mut too_many) = (0, rows.len());
    while too_many - fits > 1 {
        let middle = fits + (too_many - fits) / 2;
        if build(middle).size(format) <= TEXT_MAX_CHARS {
            fits = middle;
        } else {
            too_many = middle;
        }
    }
    build(fits)
}

/// Builds the full body with the first `included` evidence rows.
fn full(
    notice: &Notice,
    finding: &Finding,
    lead: &[Block],
    rows: &[Vec<String>],
    included: usize,
) -> Document {
    let mut doc = Document {
        blocks: lead.to_vec(),
    };
    let facts = render::facts(notice, finding)
        .into_iter()
        .filter(|(label, _)| *label != "Condition")
        .map(|(label, value)| fact(label, &render::truncate(&value, FACT_MAX_CHARS)))
        .collect();
    doc.push(Block::Bullets(facts));
    doc.push(Block::Heading("Condition".into()));
    doc.push(Block::Code(render::truncate(
        &finding.condition,
        FACT_MAX_CHARS,
    )));
    if rows.is_empty() {
        return doc;
    }
    doc.push(Block::Heading("Evidence".into()));
    doc.push(Block::Table {
        header: render::EVIDENCE_COLUMNS
            .iter()
            .map(|name| name.to_string())
            .collect(),
        rows: rows[..included].to_vec(),
    });
    let left_out = rows.len() - included;
    if left_out > 0 {
        doc.push(Block::Paragraph(vec![Inline::Text(format!(
            "{left_out} more evidence {} left out to fit Jira's limit of {TEXT_MAX_CHARS} characters.",
            if left_out == 1 { "row" } else { "rows" }
        ))]));
    }
    doc
}

/// Builds the minimal body: title, rule, severity and fingerprint.
fn minimal(notice: &Notice, finding: &Finding, lead: &[Block], format: Format) -> Document {
    let mut doc = Document {
        blocks: lead.to_vec(),
    };
    doc.push(Block::Paragraph(vec![Inline::Text(finding.title.clone())]));
    doc.push(Block::Bullets(vec![
        fact("Rule", &finding.rule_id),
        fact("Severity", finding.severity.as_str()),
        fact("Fingerprint", &finding.fingerprint),
    ]));
    if doc.size(format) <= TEXT_MAX_CHARS {
        return doc;
    }
    last_resort(notice, finding)
}

/// Returns a body that always fits: one paragraph with the title, rule and fingerprint, cut.
fn last_resort(notice: &Notice, finding: &Finding) -> Document {
    let text = format!(
        "{} ({}): rule {}, severity {}, fingerprint {}",
        finding.title,
        notice.kind,
        finding.rule_id,
        finding.severity.as_str(),
        finding.fingerprint
    );
    Document {
        blocks: vec![Block::Paragraph(vec![Inline::Text(render::truncate(
            &text,
            LAST_RESORT_CHARS,
        ))])],
    }
}

fn fact(label: &str, value: &str) -> Vec<Inline> {
    vec![
        Inline::Strong(format!("{label}:")),
        Inline::Text(format!(" {value}")),
    ]
}
