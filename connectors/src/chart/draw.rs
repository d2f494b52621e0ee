//! The PNG chart: two stacked panels that share a UTC time axis.
//!
//! The top panel shows the rule's matches per window as bars. The bottom panel shows the p99
//! latency on its left axis and the error rate on its right axis. The finding's windows are
//! shaded in both panels, and a legend row under the title names every series with its unit.
//! Sizes (fonts, label areas, margins) follow the image size, so the chart stays readable
//! from [`MIN_WIDTH`] x [`MIN_HEIGHT`] up.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use plotters::backend::DrawingBackend;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use feedloop_pipeline::impact::RouteImpact;

use super::{format_value, ChartError, Series, MAX_SIDE, MIN_HEIGHT, MIN_WIDTH};

/// The embedded font: DejaVu Sans 2.37, under the Bitstream Vera license in `assets/`.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// The family name the embedded font is registered under, unlikely to clash with a caller's.
const FONT_FAMILY: &str = "feedloop-chart-sans";

const MATCHES_COLOR: RGBColor = RGBColor(52, 101, 164);
const P99_COLOR: RGBColor = RGBColor(214, 95, 0);
const ERRORS_COLOR: RGBColor = RGBColor(136, 46, 114);
const FINDING_COLOR: RGBColor = RGBColor(250, 200, 70);
const FINDING_ALPHA: f64 = 0.3;
const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);
const TEXT_COLOR: RGBColor = RGBColor(40, 40, 40);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// The result of a drawing step.
type Drawn<T> =
    Result<T, DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

/// Draws a route's impact chart and returns it as PNG bytes of exactly `width` x `height`
/// pixels. `title` is drawn on top, cut with `…` when it does not fit.
///
/// Fails when the size is outside [`MIN_WIDTH`] x [`MIN_HEIGHT`] to [`MAX_SIDE`] pixels or
/// when the route has no windows.
pub fn render_png(
    title: &str,
    route: &RouteImpact,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, ChartError> {
    let size_ok =
        (MIN_WIDTH..=MAX_SIDE).contains(&width) && (MIN_HEIGHT..=MAX_SIDE).contains(&height);
    if !size_ok {
        return Err(ChartError::InvalidSize { width, height });
    }
    let series = Series::from_route(route);
    if series.windows.is_empty() {
        return Err(ChartError::NoWindows {
            route: route.route.clone(),
        });
    }
    register_font()?;

    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw_chart(&root, title, &series).map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    encode_png(&pixels, width, height)
}

/// Registers the embedded font with plotters once per process.
fn register_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "the embedded DejaVuSans.ttf is not a valid font".to_string())
        })
        .clone()
        .map_err(ChartError::Font)
}

fn draw_error(err: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(err.to_string())
}

/// Encodes 8-bit RGB pixels as PNG with fixed settings, so equal pixels give equal bytes.
fn encode_png(pixels: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
    let encode_error = |err: png::EncodingError| ChartError::Encode(err.to_string());
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    let mut writer = encoder.write_header().map_err(encode_error)?;
    writer.write_image_data(pixels).map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    Ok(out)
}

/// Pixel sizes derived from the image size.
struct Layout {
    /// The font size of labels and the legend, in pixels.
    font: f64,
    margin: u32,
    title_height: u32,
    legend_height: u32,
    /// The width of the left and right label areas.
    axis_width: u32,
    /// The height of the time labels and their description under the bottom panel.
    time_height: u32,
    /// The share of the panels' height that the top panel takes.
    top_share: f64,
}

impl Layout {
    fn for_size(width: u32, height: u32) -> Layout {
        let font = (f64::from(height) / 28.0)
            .min(f64::from(width) / 40.0)
            .clamp(10.0, 16.0);
        Layout {
            font,
            margin: (font * 0.6) as u32,
            title_height: (font * 2.0) as u32,
            legend_height: (font * 1.7) as u32,
            axis_width: (font * 4.2) as u32,
            time_height: (font * 3.0) as u32,
            top_share: 0.4,
        }
    }

    fn text(&self, scale: f64) -> TextStyle<'static> {
        TextStyle::from((FONT_FAMILY, self.font * scale).into_font()).color(&TEXT_COLOR)
    }

    /// Returns how many time labels of `chars` characters fit side by side in the plot.
    fn time_labels(&self, width: u32, chars: usize) -> usize {
        let plot_width = f64::from(width) - f64::from(2 * (self.margin + self.axis_width));
        let label_width = self.font * (0.6 * chars as f64 + 2.0);
        (plot_width / label_width).max(2.0) as usize
    }
}

/// The visible ranges of every axis.
struct Ranges {
    start_ms: i64,
    end_ms: i64,
    matches_max: f64,
    p99_max: f64,
    errors_max: f64,
}

impl Ranges {
    fn of(series: &Series) -> Ranges {
        let max = |value: &dyn Fn(&super::Window) -> Option<f64>| {
            series.windows.iter().filter_map(value).fold(0.0, f64::max)
        };
        Ranges {
            start_ms: series.windows[0].start_ms,
            end_ms: series.windows[series.windows.len() - 1].end_ms,
            matches_max: nice_ceiling(max(&|w| Some(w.matches))),
            p99_max: nice_ceiling(max(&|w| w.p99_ms)),
            errors_max: nice_ceiling(max(&|w| w.error_percent)).min(100.0),
        }
    }
}

/// Returns the smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of
/// ten) at least 8% above `value`, so the highest point never touches the frame; 1 for 0.
fn nice_ceiling(value: f64) -> f64 {
    let target = value * 1.08;
    if target.is_nan() || target <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(target.log10().floor());
    let step = [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .find(|step| step * power >= target)
        .unwrap_or(10.0);
    step * power
}

fn draw_chart(root: &Area<'_>, title: &str, series: &Series) -> Drawn<()> {
    let (width, height) = root.dim_in_pixel();
    let layout = Layout::for_size(width, height);
    let ranges = Ranges::of(series);
    let time = TimeAxis::new(&ranges, series.window_ms, &layout, width);
    root.fill(&WHITE)?;

    let (title_area, rest) = root.split_vertically(layout.title_height);
    draw_title(&title_area, &layout, title)?;
    let (legend_area, panels) = rest.split_vertically(layout.legend_height);
    draw_legend(&legend_area, &layout)?;

    let panels_height = f64::from(panels.dim_in_pixel().1);
    let top_height = ((panels_height - f64::from(layout.time_height)) * layout.top_share) as u32;
    let (top, bottom) = panels.split_vertically(top_height);
    draw_matches_panel(&top, &layout, &ranges, &time, series)?;
    draw_kpi_panel(&bottom, &layout, &ranges, &time, series)
}

fn draw_title(area: &Area<'_>, layout: &Layout, title: &str) -> Drawn<()> {
    let style = layout.text(1.2).pos(Pos::new(HPos::Left, VPos::Center));
    let (width, height) = area.dim_in_pixel();
    let room = width.saturating_sub(2 * layout.margin);
    let text = fit_text(area, title, &style, room)?;
    area.draw_text(&text, &style, (layout.margin as i32, height as i32 / 2))
}

/// Returns `text`, cut and ended with `…` when it is wider than `room` pixels.
fn fit_text(area: &Area<'_>, text: &str, style: &TextStyle<'_>, room: u32) -> Drawn<String> {
    if area.estimate_text_size(text, style)?.0 <= room {
        return Ok(text.to_string());
    }
    // Binary search for the longest prefix that fits with the ellipsis: `fits` always fits
    // and `too_long` never does, so a long title costs a logarithmic number of measurements.
    let chars: Vec<char> = text.chars().collect();
    let cut = |keep: usize| chars[..keep].iter().collect::<String>() + "…";
    let (mut fits, mut too_long) = (0, chars.len());
    while too_long - fits > 1 {
        let middle = fits + (too_long - fits) / 2;
        if area.estimate_text_size(&cut(middle), style)?.0 <= room {
            fits = middle;
        } else {
            too_long = middle;
        }
    }
    Ok(cut(fits))
}

/// The swatch a legend entry draws before its label.
enum Swatch {
    Bar(RGBColor),
    Line(RGBColor),
    Shade,
}

fn draw_legend(area: &Area<'_>, layout: &Layout) -> Drawn<()> {
    let long = [
        (Swatch::Bar(MATCHES_COLOR), "rule matches per window"),
        (Swatch::Line(P99_COLOR), "p99 latency (ms)"),
        (Swatch::Line(ERRORS_COLOR), "error rate (%)"),
        (Swatch::Shade, "finding windows"),
    ];
    let short = ["matches", "p99 (ms)", "errors (%)", "finding"];
    let style = layout.text(1.0).pos(Pos::new(HPos::Left, VPos::Center));
    let swatch = (layout.font * 1.6) as i32;
    let gap = (layout.font * 0.4) as i32;
    let spacing = (layout.font * 1.4) as i32;
    let room = area.dim_in_pixel().0 as i32 - 2 * layout.margin as i32;

    let mut labels: Vec<&str> = long.iter().map(|(_, label)| *label).collect();
    let mut total = 0;
    for label in &labels {
        total += swatch + gap + area.estimate_text_size(label, &style)?.0 as i32 + spacing;
    }
    if total - spacing > room {
        labels = short.to_vec();
    }

    let middle = area.dim_in_pixel().1 as i32 / 2;
    let mut x = layout.margin as i32;
    for ((kind, _), label) in long.iter().zip(labels) {
        draw_swatch(area, kind, x, middle, swatch, layout.font)?;
        x += swatch + gap;
        area.draw_text(label, &style, (x, middle))?;
        x += area.estimate_text_size(label, &style)?.0 as i32 + spacing;
    }
    Ok(())
}

fn draw_swatch(
    area: &Area<'_>,
    kind: &Swatch,
    x: i32,
    middle: i32,
    length: i32,
    font: f64,
) -> Drawn<()> {
    let half = (font * 0.45) as i32;
    match kind {
        Swatch::Bar(color) => area.draw(&Rectangle::new(
            [
                (x + length / 4, middle - half),
                (x + length * 3 / 4, middle + half),
            ],
            color.filled(),
        )),
        Swatch::Line(color) => area.draw(&PathElement::new(
            vec![(x, middle), (x + length, middle)],
            color.stroke_width(3),
        )),
        Swatch::Shade => area.draw(&Rectangle::new(
            [(x, middle - half), (x + length, middle + half)],
            FINDING_COLOR.mix(FINDING_ALPHA).filled(),
        )),
    }
}

/// The spacings of time labels, in milliseconds: round seconds, minutes, hours and days.
const TIME_STEPS_MS: [i64; 20] = [
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
];

/// Returns the times to label: multiples of the smallest round step in [`TIME_STEPS_MS`]
/// that gives at most `max_labels` labels in `start_ms..=end_ms`.
fn time_ticks(start_ms: i64, end_ms: i64, max_labels: usize) -> Vec<i64> {
    let ticks_of = |step: i64| -> Vec<i64> {
        let first = start_ms.div_euclid(step) * step;
        let first = if first < start_ms {
            first + step
        } else {
            first
        };
        (0..)
            .map(|i| first + i * step)
            .take_while(|tick| *tick <= end_ms)
            .collect()
    };
    TIME_STEPS_MS
        .into_iter()
        .map(ticks_of)
        .find(|ticks| ticks.len() <= max_labels.max(2))
        .unwrap_or_else(|| vec![start_ms, end_ms])
}

/// The time axis both panels share: where its labels go, how they read, and its description.
struct TimeAxis {
    ticks: Vec<i64>,
    /// The `chrono` format of a label.
    format: &'static str,
    description: String,
}

impl TimeAxis {
    /// Puts the date into the description when every window is on one UTC day, and into each
    /// label otherwise. Labels show seconds only for windows that are not whole minutes.
    fn new(ranges: &Ranges, window_ms: i64, layout: &Layout, width: u32) -> TimeAxis {
        let day = |ms: i64| {
            DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d").to_string())
        };
        let first_day = day(ranges.start_ms);
        let seconds = window_ms % 60_000 != 0;
        let one_day = first_day == day(ranges.end_ms - 1);
        let (format, description) = match (one_day, seconds) {
            (true, false) => (
                "%H:%M",
                format!("time (UTC), {}", first_day.unwrap_or_default()),
            ),
            (true, true) => (
                "%H:%M:%S",
                format!("time (UTC), {}", first_day.unwrap_or_default()),
            ),
            (false, false) => ("%m-%d %H:%M", "time (UTC)".to_string()),
            (false, true) => ("%m-%d %H:%M:%S", "time (UTC)".to_string()),
        };
        let max_labels = layout.time_labels(width, format.len());
        TimeAxis {
            ticks: time_ticks(ranges.start_ms, ranges.end_ms, max_labels),
            format,
            description,
        }
    }

    fn label(&self, ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .map(|t| t.format(self.format).to_string())
            .unwrap_or_default()
    }
}

fn draw_matches_panel(
    area: &Area<'_>,
    layout: &Layout,
    ranges: &Ranges,
    time: &TimeAxis,
    series: &Series,
) -> Drawn<()> {
    // The right margin takes the place of the bottom panel's right axis, so both plots have
    // the same width and their times line up.
    let x = (ranges.start_ms..ranges.end_ms).with_key_points(time.ticks.clone());
    let mut chart = ChartBuilder::on(area)
        .margin_left(layout.margin)
        .margin_right(layout.margin + layout.axis_width)
        .margin_top(layout.margin)
        .set_label_area_size(LabelAreaPosition::Left, layout.axis_width)
        .build_cartesian_2d(x, 0f64..ranges.matches_max)?;

    let shade = FINDING_COLOR.mix(FINDING_ALPHA).filled();
    chart.draw_series(
        series
            .finding_spans()
            .into_iter()
            .map(|(start, end)| Rectangle::new([(start, 0.0), (end, ranges.matches_max)], shade)),
    )?;

    let count_label = |value: &f64| format_value(*value);
    chart
        .configure_mesh()
        .y_labels(3)
        .y_label_formatter(&count_label)
        .y_desc("matches")
        .label_style(layout.text(0.9))
        .axis_desc_style(layout.text(0.9))
        .bold_line_style(GRID_COLOR)
        .light_line_style(TRANSPARENT)
        .draw()?;

    let inset = series.window_ms / 8;
    chart.draw_series(series.windows.iter().map(|window| {
        Rectangle::new(
            [
                (window.start_ms + inset, 0.0),
                (window.end_ms - inset, window.matches),
            ],
            MATCHES_COLOR.filled(),
        )
    }))?;
    Ok(())
}

fn draw_kpi_panel(
    area: &Area<'_>,
    layout: &Layout,
    ranges: &Ranges,
    time: &TimeAxis,
    series: &Series,
) -> Drawn<()> {
    let x = (ranges.start_ms..ranges.end_ms).with_key_points(time.ticks.clone());
    let mut chart = ChartBuilder::on(area)
        .margin_left(layout.margin)
        .margin_right(layout.margin)
        .margin_top(layout.margin)
        .margin_bottom(layout.margin / 2)
        .set_label_area_size(LabelAreaPosition::Left, layout.axis_width)
        .set_label_area_size(LabelAreaPosition::Right, layout.axis_width)
        .set_label_area_size(LabelAreaPosition::Bottom, layout.time_height)
        .build_cartesian_2d(x, 0f64..ranges.p99_max)?
        .set_secondary_coord(ranges.start_ms..ranges.end_ms, 0f64..ranges.errors_max);

    let shade = FINDING_COLOR.mix(FINDING_ALPHA).filled();
    chart.draw_series(
        series
            .finding_spans()
            .into_iter()
            .map(|(start, end)| Rectangle::new([(start, 0.0), (end, ranges.p99_max)], shade)),
    )?;

    let time_label = |ms: &i64| time.label(*ms);
    let value_label = |value: &f64| format_value(*value);
    chart
        .configure_mesh()
        .x_label_formatter(&time_label)
        .x_desc(time.description.as_str())
        .y_labels(4)
        .y_label_formatter(&value_label)
        .y_desc("p99 (ms)")
        .label_style(layout.text(0.9))
        .axis_desc_style(layout.text(0.9))
        .bold_line_style(GRID_COLOR)
        .light_line_style(TRANSPARENT)
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_labels(4)
        .y_label_formatter(&value_label)
        .y_desc("errors (%)")
        .label_style(layout.text(0.9))
        .axis_desc_style(layout.text(0.9))
        .draw()?;

    let stroke = if layout.font >= 13.0 { 3 } else { 2 };
    for run in series.runs(|w| w.p99_ms) {
        chart.draw_series(line_or_dot(run, P99_COLOR, stroke))?;
    }
    for run in series.runs(|w| w.error_percent) {
        chart.draw_secondary_series(line_or_dot(run, ERRORS_COLOR, stroke))?;
    }
    Ok(())
}

/// Returns the elements that draw one run: a line, or a dot for a run of a single window,
/// which a line could not show.
fn line_or_dot<DB: DrawingBackend>(
    run: Vec<(i64, f64)>,
    color: RGBColor,
    stroke: u32,
) -> Vec<DynElement<'static, DB, (i64, f64)>> {
    if run.len() == 1 {
        let style = color.filled();
        return vec![Circle::new(run[0], stroke + 1, style).into_dyn()];
    }
    vec![PathElement::new(run, color.stroke_width(stroke)).into_dyn()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::tests::{attack_route, route_with};

    /// Decodes a PNG fully and returns its width, height and color type.
    fn decode(png_bytes: &[u8]) -> (u32, u32, png::ColorType) {
        let decoder = png::Decoder::new(png_bytes);
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        (frame.width, frame.height, frame.color_type)
    }

    #[test]
    fn render_png_has_requested_size() {
        let route = attack_route();
        for (width, height) in [(800, 400), (400, 200), (320, 160), (1200, 700)] {
            let png_bytes = render_png("Credential stuffing", &route, width, height).unwrap();
            assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(
                decode(&png_bytes),
                (width, height, png::ColorType::Rgb),
                "{width}x{height}"
            );
        }
    }

    #[test]
    fn render_png_is_deterministic() {
        let route = attack_route();
        let first = render_png("Credential stuffing on POST /login", &route, 800, 400).unwrap();
        let second = render_png("Credential stuffing on POST /login", &route, 800, 400).unwrap();
        assert!(first == second, "two renders of one input differ");
        let other = render_png("Another title", &route, 800, 400).unwrap();
        assert!(first != other, "the title is not drawn");
    }

    #[test]
    fn render_png_rejects_bad_input() {
        let route = attack_route();
        let err = render_png("t", &route, 100, 400).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid chart size 100x400: use 320x160 to 4096x4096 pixels, such as 800x400"
        );
        assert!(matches!(
            render_png("t", &route, 800, 5_000),
            Err(ChartError::InvalidSize { .. })
        ));
        let mut empty = route;
        empty.series.clear();
        let err = render_png("t", &empty, 800, 400).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route `POST /login` has no KPI windows to chart"
        );
    }

    #[test]
    fn render_png_draws_sparse_and_flat_series() {
        let cases = [
            route_with(&[(0, None, 0.0, false)]),
            route_with(&[(5, Some(100.0), 0.0, true), (5, None, 0.0, true)]),
            route_with(&[(0, Some(f64::INFINITY), 1.0, false); 3]),
        ];
        for route in cases {
            let png_bytes = render_png("flat", &route, 400, 200).unwrap();
            assert_eq!(decode(&png_bytes), (400, 200, png::ColorType::Rgb));
        }
    }

    #[test]
    fn render_png_cuts_long_titles() {
        let route = attack_route();
        let long = format!("Credential stuffing on {}", "/x".repeat(5_000));
        let png_bytes = render_png(&long, &route, 400, 200).unwrap();
        assert_eq!(decode(&png_bytes), (400, 200, png::ColorType::Rgb));
        let shorter = format!("Credential stuffing on {}", "/x".repeat(4_000));
        assert!(png_bytes == render_png(&shorter, &route, 400, 200).unwrap());
    }

    #[test]
    fn nice_ceiling_leaves_headroom() {
        let cases = [
            (0.0, 1.0),
            (300.0, 400.0),
            (480.0, 600.0),
            (12.5, 15.0),
            (2.0, 2.5),
            (0.3, 0.4),
            (9.5, 12.0),
        ];
        for (value, expected) in cases {
            let ceiling = nice_ceiling(value);
            assert!((ceiling - expected).abs() < 1e-9, "{value}: {ceiling}");
        }
    }

    #[test]
    fn time_axis_puts_one_day_in_description() {
        let layout = Layout::for_size(800, 400);
        let ranges = Ranges::of(&Series::from_route(&attack_route()));
        let time = TimeAxis::new(&ranges, 60_000, &layout, 800);
        assert_eq!(time.format, "%H:%M");
        assert_eq!(time.description, "time (UTC), 2026-12-04");
        assert_eq!(time.label(time.ticks[0]), "10:00");
        let two_days = Ranges {
            end_ms: ranges.start_ms + 86_400_000,
            ..ranges
        };
        let time = TimeAxis::new(&two_days, 30_000, &layout, 800);
        assert_eq!(time.format, "%m-%d %H:%M:%S");
        assert_eq!(time.description, "time (UTC)");
    }

    #[test]
    fn time_ticks_fall_on_round_times() {
        let start = crate::chart::tests::START_MS;
        let minute = 60_000;
        let ticks = time_ticks(start, start + 40 * minute, 10);
        let expected: Vec<i64> = (0..=8).map(|i| start + i * 5 * minute).collect();
        assert_eq!(ticks, expected);
        let ticks = time_ticks(start + 30_000, start + 40 * minute, 5);
        let expected: Vec<i64> = (1..=4).map(|i| start + i * 10 * minute).collect();
        assert_eq!(ticks, expected);
    }
}
