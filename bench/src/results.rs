//! Sections of the results page, so each benchmark rewrites only its own part.
//!
//! `bench/RESULTS.md` contains the throughput benchmark's page followed by sections that other
//! benchmarks own, each opened by a level-two heading such as `## Finding latency`. A section
//! runs from its heading to the next level-two heading outside a code block, or to the end of
//! the page. A benchmark that wrote the whole file would otherwise delete the other
//! benchmarks' figures.

/// The heading of the section that `feedloop-bench latency` writes.
pub const LATENCY_HEADING: &str = "## Finding latency";

/// The heading of the KPI cost section, measured by hand and kept when the throughput
/// benchmark writes the page anew.
pub const KPI_COST_HEADING: &str = "## KPI cost";

/// Returns the byte range of the section that starts with the line `heading`, if the page has
/// one.
pub fn section_range(page: &str, heading: &str) -> Option<std::ops::Range<usize>> {
    let mut start = None;
    let mut in_code = false;
    let mut offset = 0;
    for line in page.split_inclusive('\n') {
        let text = line.trim_end();
        if text.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && text.starts_with("## ") {
            if start.is_some() {
                return start.map(|s| s..offset);
            }
            if text == heading {
                start = Some(offset);
            }
        }
        offset += line.len();
    }
    start.map(|s| s..page.len())
}

/// Returns the section that starts with the line `heading`, heading included.
pub fn section<'a>(page: &'a str, heading: &str) -> Option<&'a str> {
    section_range(page, heading).map(|range| &page[range])
}

/// Replaces the section that starts with the first line of `section`, or appends `section`
/// after a blank line when the page has no such section.
///
/// # Panics
///
/// Panics when `section` does not start with a level-two heading.
pub fn replace_section(page: &str, section: &str) -> String {
    let heading = section.lines().next().unwrap_or_default().trim_end();
    assert!(
        heading.starts_with("## "),
        "a section starts with a level-two heading"
    );
    let mut section = section.to_string();
    if !section.ends_with('\n') {
        section.push('\n');
    }
    match section_range(page, heading) {
        Some(range) => {
            let mut text = String::with_capacity(page.len() + section.len());
            text.push_str(&page[..range.start]);
            text.push_str(&section);
            // A section that a later one follows keeps a blank line before it.
            if range.end < page.len() {
                text.push('\n');
            }
            text.push_str(&page[range.end..]);
            text
        }
        None => {
            let mut text = page.trim_end().to_string();
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&section);
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# Benchmark results\n\nintro\n\n## What the figures mean\n\n- a\n\n\
                        ```\n## not a heading\n```\n";

    #[test]
    fn section_missing_is_appended() {
        let page = replace_section(PAGE, "## Finding latency\n\nfigures\n");
        assert!(page.starts_with(PAGE.trim_end()), "{page}");
        assert!(
            page.ends_with("```\n\n## Finding latency\n\nfigures\n"),
            "{page}"
        );
    }

    #[test]
    fn section_present_is_replaced() {
        let once = replace_section(PAGE, "## Finding latency\n\nold\n");
        let twice = replace_section(&once, "## Finding latency\n\nnew\n");
        assert!(!twice.contains("old"), "{twice}");
        assert_eq!(twice.matches(LATENCY_HEADING).count(), 1, "{twice}");
        assert!(twice.ends_with("## Finding latency\n\nnew\n"), "{twice}");
    }

    #[test]
    fn section_ends_at_next_heading() {
        let page = "# R\n\n## Finding latency\n\nx\n\n## Other\n\ny\n";
        assert_eq!(
            section(page, LATENCY_HEADING),
            Some("## Finding latency\n\nx\n\n")
        );
        let replaced = replace_section(page, "## Finding latency\n\nz\n");
        assert_eq!(
            replaced,
            "# R\n\n## Finding latency\n\nz\n\n## Other\n\ny\n"
        );
    }

    #[test]
    fn heading_inside_code_block_is_ignored() {
        assert_eq!(section(PAGE, "## not a heading"), None);
        let page = "## Finding latency\n\n```\n## Other\n```\nend\n";
        assert_eq!(section(page, LATENCY_HEADING), Some(page));
    }
}
