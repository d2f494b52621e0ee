//! Renders the impact chart of one route, as the Jira receiver attaches it, and prints the text
//! chart that text-only receivers show.
//!
//! Regenerate the committed example from the repository root with:
//!
//! ```text
//! cargo run -p feedloop-connectors --example impact_chart
//! ```
//!
//! Arguments, all optional: the route as `RouteImpact` JSON (default
//! `examples/impact/route.json`), the PNG to write (default
//! `examples/impact/chart-example.png`), the width and the height in pixels (default 800x400).

use std::path::PathBuf;
use std::process::ExitCode;

use feedloop_connectors::chart::{self, DEFAULT_HEIGHT, DEFAULT_WIDTH};
use feedloop_pipeline::impact::RouteImpact;

const TITLE: &str = "Credential stuffing: POST /login on accounts";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("impact_chart: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/impact");
    let mut args = std::env::args().skip(1);
    let input = args
        .next()
        .map_or_else(|| examples.join("route.json"), PathBuf::from);
    let output = args
        .next()
        .map_or_else(|| examples.join("chart-example.png"), PathBuf::from);
    let width = size_arg(args.next(), DEFAULT_WIDTH, "width")?;
    let height = size_arg(args.next(), DEFAULT_HEIGHT, "height")?;

    let text = std::fs::read_to_string(&input)
        .map_err(|err| format!("failed to read {}: {err}", input.display()))?;
    let route: RouteImpact = serde_json::from_str(&text)
        .map_err(|err| format!("invalid RouteImpact JSON in {}: {err}", input.display()))?;
    let png = chart::render_png(TITLE, &route, width, height).map_err(|err| err.to_string())?;
    std::fs::write(&output, &png)
        .map_err(|err| format!("failed to write {}: {err}", output.display()))?;
    println!("{}", chart::text_chart(&route));
    println!("wrote {} ({} bytes)", output.display(), png.len());
    Ok(())
}

fn size_arg(arg: Option<String>, default: u32, name: &str) -> Result<u32, String> {
    match arg {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            format!("invalid {name} `{text}`: use a number of pixels, such as {default}")
        }),
    }
}
