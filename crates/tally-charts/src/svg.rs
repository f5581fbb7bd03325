//! Chart primitives: a line chart with optional interval bands, a stacked column chart and a
//! horizontal bar chart, each rendered as one `<figure>` holding an inline SVG and an HTML
//! legend.
//!
//! The SVGs use a fixed `viewBox` and scale to the width of their container, so they work from a
//! phone to a wide screen; the legend is HTML so it wraps instead of overflowing. Every drawn
//! datum carries `data-*` attributes (`data-series`, `data-week`, `data-value`, …) so tests, in
//! Rust or in a browser, can check what was drawn without parsing geometry. All names are
//! escaped.

use std::fmt::Write as _;

use crate::html::escape;

/// Width and height of every chart's coordinate system (the SVG scales it to fit).
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// At most this many x-axis labels are written, so dates never overlap.
const MAX_X_LABELS: usize = 5;

/// Tableau 10: distinguishable, and readable on white.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// The colour of the `index`th series of a chart.
pub fn color(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// The kinds of chart (`kind`, `data-chart`) whose series or rows are compile outcomes: on a
/// collector's program page the outcome mix of the latest week, over the weeks, and the share of
/// reports with each outcome; in `tally view`, the user's outcomes.
pub const OUTCOME_CHARTS: [&str; 4] = [
    "outcome-mix",
    "outcome-mix-weeks",
    "outcome-partition",
    "user-outcomes",
];

/// The kind of chart whose rows are versions and whose bars are compiler crashes: drawn in the
/// crash outcome's colour.
pub const CRASH_CHART: &str = "ice-by-version";

/// The one colour of a compile outcome (`ok`, `error`, `ice`, `signal`, `other`), the same in
/// every chart whatever else it shows: success green, an error in the alarm colour (red), a
/// compiler crash purple, a killed compile orange, anything else grey. `None` for any other name.
pub fn outcome_color(outcome: &str) -> Option<&'static str> {
    match outcome {
        "ok" => Some("#59a14f"),
        "error" => Some("#e15759"),
        "ice" => Some("#b07aa1"),
        "signal" => Some("#f28e2b"),
        "other" => Some("#bab0ac"),
        _ => None,
    }
}

/// The colour of the `index`th series or row, labelled `label`, of a chart of `kind`: an
/// outcome's own colour in [`OUTCOME_CHARTS`] (the label's last word names it: `ok`, or `rustc
/// ok` in `tally view`) and the crash colour in the [`CRASH_CHART`], else the palette's next.
fn item_color(kind: &str, label: &str, index: usize) -> &'static str {
    let outcome = if kind == CRASH_CHART {
        Some("ice")
    } else if OUTCOME_CHARTS.contains(&kind) {
        label.rsplit(' ').next()
    } else {
        None
    };
    outcome
        .and_then(outcome_color)
        .unwrap_or_else(|| color(index))
}

/// What the y axis measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A proportion in `[0, 1]`, labelled as a percentage.
    Share,
    /// A non-negative count.
    Count,
}

impl Scale {
    fn format(self, value: f64) -> String {
        match self {
            Scale::Share => format_percent(value),
            Scale::Count => format_count(value),
        }
    }
}

/// `0.1234` as `12.3%` (no trailing `.0`).
pub fn format_percent(share: f64) -> String {
    let percent = share * 100.0;
    let text = format!("{percent:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}%")
}

fn format_count(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{}", value.round() as i64)
    } else {
        format!("{value:.2}")
    }
}

/// Numbers written into SVG coordinates: two decimals are far below a pixel.
fn coord(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One datum of a line series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub value: f64,
    /// The interval drawn around the value (the Wilson interval of a share).
    pub band: Option<(f64, f64)>,
    /// Extra words for the tooltip (e.g. "3 of 12 reports").
    pub detail: String,
}

/// A named line: one optional point per x label (`None` draws a gap).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The full name (a counter name), written to `data-series` and the tooltips.
    pub name: String,
    /// What the legend shows (a partition's bucket, or the name itself).
    pub label: String,
    pub points: Vec<Option<Point>>,
}

/// A line chart with one x position per label.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Goes into `data-chart`; says what kind of chart this is (`counter`, `partition`, …).
    pub kind: &'static str,
    pub title: String,
    pub x_labels: Vec<String>,
    pub series: Vec<Series>,
    pub scale: Scale,
}

/// Smallest "round" number (1, 2, 2.5 or 5 times a power of ten) at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    round_up(value, &[1.0, 2.0, 2.5, 5.0, 10.0])
}

/// Smallest multiple of a power of ten by one of `steps` (ascending, ending at 10) at or above
/// `value`; 1 for zero, negative or NaN input.
fn round_up(value: f64, steps: &[f64]) -> f64 {
    if value.is_nan() || value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    let fraction = value / magnitude;
    let step = steps
        .iter()
        .copied()
        .find(|step| fraction <= step * (1.0 + 1e-9))
        .unwrap_or(10.0);
    step * magnitude
}

/// The top of the y axis for data whose largest value is `max`. Counts get a whole-number
/// gridline step (the axis has four steps), so no label reads "18.75".
fn y_top(scale: Scale, max: f64) -> f64 {
    match scale {
        Scale::Share => nice_ceiling(max.max(0.01)).min(1.0),
        Scale::Count => {
            let step = round_up(max / 4.0, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]).max(1.0);
            4.0 * step
        }
    }
}

/// The x coordinate of position `index` of `count`.
fn x_at(index: usize, count: usize) -> f64 {
    let plot = WIDTH - LEFT - RIGHT;
    if count <= 1 {
        return LEFT + plot / 2.0;
    }
    let pad = (plot / count as f64 / 2.0).min(24.0);
    LEFT + pad + (plot - 2.0 * pad) * index as f64 / (count - 1) as f64
}

fn y_at(value: f64, top: f64) -> f64 {
    let plot = HEIGHT - TOP - BOTTOM;
    let clamped = value.clamp(0.0, top);
    TOP + plot * (1.0 - clamped / top)
}

/// Opens a chart: its `<figure>` and caption, then its `<svg>`, [`WIDTH`] wide and `height`
/// high, titled for screen readers. The caller closes both.
fn open_figure(out: &mut String, kind: &str, title: &str, height: f64) {
    let (kind, title) = (escape(kind), escape(title));
    let _ = write!(
        out,
        "<figure class=\"chart\" data-chart=\"{kind}\"><figcaption>{title}</figcaption>\
         <svg class=\"chart\" data-chart=\"{kind}\" data-title=\"{title}\" viewBox=\"0 0 {WIDTH} {height}\" \
         xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{title}\" preserveAspectRatio=\"xMidYMid meet\">",
        height = coord(height),
    );
}

/// A datum's tooltip: `head`, then its interval (in `scale`'s words) if it has one, then
/// `detail` if any.
fn tooltip(mut head: String, scale: Scale, band: Option<(f64, f64)>, detail: &str) -> String {
    if let Some((low, high)) = band {
        let _ = write!(
            head,
            " (95% interval {} to {})",
            scale.format(low),
            scale.format(high)
        );
    }
    if !detail.is_empty() {
        let _ = write!(head, "; {detail}");
    }
    head
}

/// `label`, cut to `max` characters with an ellipsis when longer (tooltips keep the whole name).
fn shortened(label: &str, max: usize) -> String {
    if label.chars().count() > max {
        let mut short: String = label.chars().take(max - 1).collect();
        short.push('…');
        short
    } else {
        label.to_owned()
    }
}

/// Horizontal grid lines and y labels.
fn y_axis(out: &mut String, scale: Scale, top: f64) {
    for step in 0..=4 {
        let value = top * f64::from(step) / 4.0;
        let y = coord(y_at(value, top));
        let _ = write!(
            out,
            "<line class=\"grid-line\" x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y}\" y2=\"{y}\"/>\
             <text x=\"{tx}\" y=\"{y}\" dy=\"0.32em\" text-anchor=\"end\">{label}</text>",
            x2 = WIDTH - RIGHT,
            tx = LEFT - 5.0,
            label = escape(&scale.format(value)),
        );
    }
}

/// The x labels, thinned to at most [`MAX_X_LABELS`], always keeping the last one.
fn x_axis(out: &mut String, labels: &[String]) {
    let count = labels.len();
    let every = count.div_ceil(MAX_X_LABELS).max(1);
    let baseline = HEIGHT - BOTTOM;
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{baseline}\" y2=\"{baseline}\"/>",
        x2 = WIDTH - RIGHT
    );
    for (index, label) in labels.iter().enumerate() {
        let is_last = index + 1 == count;
        let shown = if is_last {
            true
        } else {
            index % every == 0 && count - 1 - index >= every
        };
        if !shown {
            continue;
        }
        // A date is about 60 units wide: the last one is right-aligned where centring it would
        // cut it off at the chart's edge.
        let x = x_at(index, count);
        let (x, anchor) = if x + 31.0 > WIDTH {
            (WIDTH - 2.0, "end")
        } else {
            (x, "middle")
        };
        let _ = write!(
            out,
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"{anchor}\">{label}</text>",
            x = coord(x),
            y = HEIGHT - 9.0,
            label = escape(label),
        );
    }
}

fn legend(out: &mut String, kind: &str, names: &[&str]) {
    out.push_str("<ul class=\"legend\">");
    for (index, name) in names.iter().enumerate() {
        let _ = write!(
            out,
            "<li><span class=\"swatch\" style=\"background:{color}\"></span>{name}</li>",
            color = item_color(kind, name, index),
            name = escape(name),
        );
    }
    out.push_str("</ul>");
}

/// Renders a line chart. Each run of consecutive points is joined by a line; where points have
/// bands, the band is drawn as a translucent area plus a whisker at each point (so a single week
/// still shows its interval).
pub fn line_chart(chart: &LineChart) -> String {
    let max = chart
        .series
        .iter()
        .flat_map(|series| series.points.iter().flatten())
        .map(|point| {
            point
                .band
                .map_or(point.value, |(_, high)| high.max(point.value))
        })
        .fold(0.0, f64::max);
    let top = y_top(chart.scale, max);

    let mut out = String::new();
    open_figure(&mut out, chart.kind, &chart.title, HEIGHT);
    y_axis(&mut out, chart.scale, top);
    x_axis(&mut out, &chart.x_labels);
    for index in 0..chart.series.len() {
        line_series(&mut out, chart, index, top);
    }
    out.push_str("</svg>");
    let names: Vec<&str> = chart.series.iter().map(|s| s.label.as_str()).collect();
    legend(&mut out, chart.kind, &names);
    out.push_str("</figure>\n");
    out
}

/// Series `index` of a line chart whose y axis ends at `top`: the bands and lines of its runs
/// of present points, then each point, with its whisker and tooltip.
fn line_series(out: &mut String, chart: &LineChart, index: usize, top: f64) {
    let series = &chart.series[index];
    let count = chart.x_labels.len();
    let color = item_color(chart.kind, &series.label, index);
    // Dodging keeps equal values apart; with many weeks it would blur the lines instead.
    let shift = dodge(index, chart.series.len()) * (12.0 / count.max(1) as f64).min(1.0);
    let drawn = series.points.iter().take(count).flatten().count();
    let _ = write!(
        out,
        "<g class=\"series\" data-series=\"{name}\" data-points=\"{drawn}\">",
        name = escape(&series.name)
    );
    for run in runs(&series.points[..series.points.len().min(count)]) {
        draw_band(out, &run, count, shift, top, color);
        if run.len() >= 2 {
            let points: Vec<String> = run
                .iter()
                .map(|(i, p)| {
                    format!(
                        "{},{}",
                        coord(x_at(*i, count) + shift),
                        coord(y_at(p.value, top))
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<polyline class=\"line\" stroke=\"{color}\" points=\"{}\"/>",
                points.join(" ")
            );
        }
    }
    for (i, point) in series.points.iter().take(count).enumerate() {
        let Some(point) = point else { continue };
        let x = coord(x_at(i, count) + shift);
        if let Some((low, high)) = point.band {
            let _ = write!(
                out,
                "<line class=\"whisker\" stroke=\"{color}\" stroke-width=\"1.5\" x1=\"{x}\" x2=\"{x}\" y1=\"{y1}\" y2=\"{y2}\"/>",
                y1 = coord(y_at(low, top)),
                y2 = coord(y_at(high, top)),
            );
        }
        let _ = write!(
            out,
            "<circle class=\"point\" fill=\"{color}\" cx=\"{x}\" cy=\"{y}\" r=\"{r}\" data-week=\"{week}\" data-value=\"{value}\"",
            y = coord(y_at(point.value, top)),
            r = if count > 16 { "2.2" } else { "3.5" },
            week = escape(&chart.x_labels[i]),
            value = point.value,
        );
        if let Some((low, high)) = point.band {
            let _ = write!(out, " data-low=\"{low}\" data-high=\"{high}\"");
        }
        let head = format!(
            "{}, {}: {}",
            series.name,
            chart.x_labels[i],
            chart.scale.format(point.value)
        );
        let tip = tooltip(head, chart.scale, point.band, &point.detail);
        let _ = write!(out, "><title>{}</title></circle>", escape(&tip));
    }
    out.push_str("</g>");
}

/// Consecutive present points, with their x index.
fn runs(points: &[Option<Point>]) -> Vec<Vec<(usize, &Point)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for (index, point) in points.iter().enumerate() {
        match point {
            Some(point) => current.push((index, point)),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// How far series `index` of `series` is moved sideways, so that series with equal values
/// (every bucket of a partition at 100% in a one-report week) stay visible side by side
/// instead of hiding each other.
fn dodge(index: usize, series: usize) -> f64 {
    if series < 2 {
        return 0.0;
    }
    let step = (24.0 / series as f64).min(5.0);
    (index as f64 - (series - 1) as f64 / 2.0) * step
}

fn draw_band(
    out: &mut String,
    run: &[(usize, &Point)],
    count: usize,
    shift: f64,
    top: f64,
    color: &str,
) {
    if run.len() < 2 || run.iter().any(|(_, p)| p.band.is_none()) {
        return;
    }
    let mut corners = Vec::with_capacity(run.len() * 2);
    for (i, point) in run {
        let (_, high) = point.band.unwrap_or((point.value, point.value));
        corners.push(format!(
            "{},{}",
            coord(x_at(*i, count) + shift),
            coord(y_at(high, top))
        ));
    }
    for (i, point) in run.iter().rev() {
        let (low, _) = point.band.unwrap_or((point.value, point.value));
        corners.push(format!(
            "{},{}",
            coord(x_at(*i, count) + shift),
            coord(y_at(low, top))
        ));
    }
    let _ = write!(
        out,
        "<polygon class=\"band\" fill=\"{color}\" fill-opacity=\"0.18\" points=\"{}\"/>",
        corners.join(" ")
    );
}

/// A stacked column chart: one column per x label, one segment per named stack.
#[derive(Debug, Clone, PartialEq)]
pub struct StackedColumns {
    pub kind: &'static str,
    pub title: String,
    pub x_labels: Vec<String>,
    /// (segment name, value per x label).
    pub stacks: Vec<(String, Vec<u64>)>,
}

/// Renders a stacked column chart of counts.
pub fn stacked_columns(chart: &StackedColumns) -> String {
    let count = chart.x_labels.len();
    let column_totals: Vec<u64> = (0..count)
        .map(|i| {
            chart
                .stacks
                .iter()
                .map(|(_, values)| values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let top = y_top(
        Scale::Count,
        column_totals.iter().copied().max().unwrap_or(0) as f64,
    );
    let plot = WIDTH - LEFT - RIGHT;
    let bar = (plot / count.max(1) as f64 * 0.6).min(44.0);

    let mut out = String::new();
    open_figure(&mut out, chart.kind, &chart.title, HEIGHT);
    y_axis(&mut out, Scale::Count, top);
    x_axis(&mut out, &chart.x_labels);
    for (index, (name, values)) in chart.stacks.iter().enumerate() {
        let color = item_color(chart.kind, name, index);
        let _ = write!(out, "<g class=\"series\" data-series=\"{}\">", escape(name));
        for (i, value) in values.iter().take(count).enumerate() {
            if *value == 0 {
                continue;
            }
            let below: u64 = chart.stacks[..index]
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                .sum();
            let y_high = y_at((below + value) as f64, top);
            let y_low = y_at(below as f64, top);
            let _ = write!(
                out,
                "<rect class=\"segment\" fill=\"{color}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" data-week=\"{week}\" data-value=\"{value}\"><title>{tip}</title></rect>",
                x = coord(x_at(i, count) - bar / 2.0),
                y = coord(y_high),
                w = coord(bar),
                h = coord((y_low - y_high).max(0.0)),
                week = escape(&chart.x_labels[i]),
                tip = escape(&format!("{name}, {}: {value}", chart.x_labels[i])),
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    let names: Vec<&str> = chart.stacks.iter().map(|(n, _)| n.as_str()).collect();
    legend(&mut out, chart.kind, &names);
    out.push_str("</figure>\n");
    out
}

/// A horizontal bar chart of named counts (one bar per row, longest label area on the left).
#[derive(Debug, Clone, PartialEq)]
pub struct HorizontalBars {
    pub kind: &'static str,
    pub title: String,
    pub rows: Vec<(String, u64)>,
}

/// Labels longer than this are shortened on the chart (the tooltip keeps the whole name).
const MAX_BAR_LABEL_CHARS: usize = 36;

/// Renders a horizontal bar chart; its height grows with the number of rows.
pub fn horizontal_bars(chart: &HorizontalBars) -> String {
    let row_height = 18.0;
    let label_width = 236.0;
    let value_width = 50.0;
    let height = TOP + row_height * chart.rows.len().max(1) as f64 + 6.0;
    let max = chart.rows.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let plot = WIDTH - label_width - value_width;

    let mut out = String::new();
    open_figure(&mut out, chart.kind, &chart.title, height);
    for (index, (name, value)) in chart.rows.iter().enumerate() {
        let y = TOP + row_height * index as f64;
        let shown = shortened(name, MAX_BAR_LABEL_CHARS);
        let width = (plot * *value as f64 / max).max(if *value > 0 { 1.0 } else { 0.0 });
        let _ = write!(
            out,
            "<g class=\"series\" data-series=\"{name_attr}\">\
             <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
             <rect class=\"bar\" fill=\"{color}\" x=\"{label_width}\" y=\"{ry}\" width=\"{w}\" height=\"{h}\" data-value=\"{value}\"><title>{tip}</title></rect>\
             <text x=\"{vx}\" y=\"{ty}\">{value}</text></g>",
            name_attr = escape(name),
            lx = label_width - 6.0,
            ty = coord(y + row_height / 2.0 + 4.0),
            label = escape(&shown),
            color = item_color(chart.kind, name, 0),
            ry = coord(y + 3.0),
            w = coord(width),
            h = coord(row_height - 6.0),
            tip = escape(&format!("{name}: {value}")),
            vx = coord(label_width + width + 4.0),
        );
    }
    out.push_str("</svg></figure>\n");
    out
}

/// One row of an [`IntervalBars`] chart.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    /// The full name (a counter, a version), written to `data-series` and the tooltip.
    pub name: String,
    /// What the row's label shows.
    pub label: String,
    /// A share in `[0, 1]`.
    pub value: f64,
    /// Its interval (the Wilson interval), drawn as a whisker across the bar's end.
    pub band: Option<(f64, f64)>,
    /// Extra words for the tooltip.
    pub detail: String,
}

/// Horizontal bars of shares, each with its interval: for comparing buckets within one week,
/// where a reader looks first at which bars' intervals overlap.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalBars {
    pub kind: &'static str,
    pub title: String,
    pub rows: Vec<IntervalRow>,
    /// Words under the chart (what was left out), or empty.
    pub note: String,
}

/// An [`IntervalBars`] chart's layout: each row this high, its label this wide on the left,
/// room for its value on the right, and the percentage axis under the rows.
const INTERVAL_ROW_HEIGHT: f64 = 20.0;
const INTERVAL_LABEL_WIDTH: f64 = 170.0;
const INTERVAL_VALUE_WIDTH: f64 = 52.0;
const INTERVAL_AXIS: f64 = 16.0;
/// Labels longer than this are shortened on an [`IntervalBars`] chart.
const MAX_INTERVAL_LABEL_CHARS: usize = 26;

/// Where a share falls on an [`IntervalBars`] chart's horizontal axis.
struct ShareAxis {
    /// The share at the axis's end.
    top: f64,
    /// The axis's length.
    plot: f64,
}

impl ShareAxis {
    fn x(&self, value: f64) -> f64 {
        INTERVAL_LABEL_WIDTH + self.plot * value.clamp(0.0, self.top) / self.top
    }
}

/// Renders an [`IntervalBars`] chart; its height grows with the number of rows.
pub fn interval_bars(chart: &IntervalBars) -> String {
    let height = TOP + INTERVAL_ROW_HEIGHT * chart.rows.len().max(1) as f64 + INTERVAL_AXIS;
    let max = chart
        .rows
        .iter()
        .map(|r| r.band.map_or(r.value, |(_, high)| high.max(r.value)))
        .fold(0.0, f64::max);
    let axis = ShareAxis {
        top: y_top(Scale::Share, max),
        plot: WIDTH - INTERVAL_LABEL_WIDTH - INTERVAL_VALUE_WIDTH - RIGHT,
    };

    let mut out = String::new();
    open_figure(&mut out, chart.kind, &chart.title, height);
    // Vertical grid lines with their percentages along the bottom.
    let bottom = TOP + INTERVAL_ROW_HEIGHT * chart.rows.len().max(1) as f64;
    for step in 0..=4 {
        let value = axis.top * f64::from(step) / 4.0;
        let x = coord(axis.x(value));
        let _ = write!(
            out,
            "<line class=\"grid-line\" x1=\"{x}\" x2=\"{x}\" y1=\"{TOP}\" y2=\"{b}\"/>\
             <text x=\"{x}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>",
            b = coord(bottom),
            ty = coord(bottom + 12.0),
            label = escape(&format_percent(value)),
        );
    }
    for (index, row) in chart.rows.iter().enumerate() {
        interval_row(
            &mut out,
            chart.kind,
            &axis,
            TOP + INTERVAL_ROW_HEIGHT * index as f64,
            row,
        );
    }
    out.push_str("</svg>");
    if !chart.note.is_empty() {
        let _ = write!(out, "<p class=\"note\">{}</p>", escape(&chart.note));
    }
    out.push_str("</figure>\n");
    out
}

/// One row of an [`IntervalBars`] chart, from `y` down: its label, its bar with the tooltip,
/// the whiskers of its interval, and its value past the bar's end.
fn interval_row(out: &mut String, kind: &str, axis: &ShareAxis, y: f64, row: &IntervalRow) {
    let head = format!("{}: {}", row.name, format_percent(row.value));
    let tip = tooltip(head, Scale::Share, row.band, &row.detail);
    let width =
        (axis.x(row.value) - INTERVAL_LABEL_WIDTH).max(if row.value > 0.0 { 1.0 } else { 0.0 });
    let _ = write!(
        out,
        "<g class=\"series\" data-series=\"{name}\"><text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
         <rect class=\"bar\" fill=\"{color}\" fill-opacity=\"0.75\" x=\"{INTERVAL_LABEL_WIDTH}\" y=\"{ry}\" width=\"{w}\" height=\"{h}\" data-value=\"{value}\"",
        name = escape(&row.name),
        lx = INTERVAL_LABEL_WIDTH - 6.0,
        ty = coord(y + INTERVAL_ROW_HEIGHT / 2.0 + 4.0),
        label = escape(&shortened(&row.label, MAX_INTERVAL_LABEL_CHARS)),
        color = item_color(kind, &row.label, 0),
        ry = coord(y + 4.0),
        w = coord(width),
        h = coord(INTERVAL_ROW_HEIGHT - 8.0),
        value = row.value,
    );
    if let Some((low, high)) = row.band {
        let _ = write!(out, " data-low=\"{low}\" data-high=\"{high}\"");
    }
    let _ = write!(out, "><title>{}</title></rect>", escape(&tip));
    let mut value_x = INTERVAL_LABEL_WIDTH + width + 4.0;
    if let Some((low, high)) = row.band {
        let (x1, x2, cy) = (axis.x(low), axis.x(high), y + INTERVAL_ROW_HEIGHT / 2.0);
        let _ = write!(
            out,
            "<line class=\"whisker\" stroke=\"#1b1f24\" stroke-width=\"1.5\" x1=\"{x1}\" x2=\"{x2}\" y1=\"{cy}\" y2=\"{cy}\"/>\
             <line class=\"whisker\" stroke=\"#1b1f24\" stroke-width=\"1.5\" x1=\"{x1}\" x2=\"{x1}\" y1=\"{t}\" y2=\"{b}\"/>\
             <line class=\"whisker\" stroke=\"#1b1f24\" stroke-width=\"1.5\" x1=\"{x2}\" x2=\"{x2}\" y1=\"{t}\" y2=\"{b}\"/>",
            x1 = coord(x1),
            x2 = coord(x2),
            cy = coord(cy),
            t = coord(cy - 4.0),
            b = coord(cy + 4.0),
        );
        value_x = value_x.max(x2 + 4.0);
    }
    let _ = write!(
        out,
        "<text x=\"{vx}\" y=\"{ty}\">{text}</text></g>",
        vx = coord(value_x.min(WIDTH - INTERVAL_VALUE_WIDTH + 8.0)),
        ty = coord(y + INTERVAL_ROW_HEIGHT / 2.0 + 4.0),
        text = escape(&format_percent(row.value)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_bars_draw_each_row_with_its_whiskers_inside_the_chart() {
        let rows = (0..3)
            .map(|i| IntervalRow {
                name: format!("x:{i}"),
                label: format!("{i}"),
                value: 0.2 * f64::from(i),
                band: Some((0.1 * f64::from(i), 0.3 * f64::from(i) + 0.05)),
                detail: String::new(),
            })
            .collect();
        let svg = interval_bars(&IntervalBars {
            kind: "latest",
            title: "t".into(),
            rows,
            note: "2 more".into(),
        });
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        assert_eq!(svg.matches("class=\"whisker\"").count(), 9);
        assert!(svg.contains("data-value=\"0.4\" data-low=\"0.2\" data-high=\"0.65\""));
        assert!(svg.contains("2 more"));
        for x in svg.split(" x2=\"").skip(1) {
            let x: f64 = x[..x.find('"').unwrap()].parse().unwrap();
            assert!(x <= WIDTH, "{x}");
        }
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.34), 0.5);
        assert_eq!(nice_ceiling(0.2), 0.2);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(y_top(Scale::Share, 0.97), 1.0);
        assert_eq!(y_top(Scale::Count, 0.0), 4.0);
        assert_eq!(y_top(Scale::Count, 21.0), 24.0);
        assert_eq!(y_top(Scale::Count, 61.0), 80.0);
        assert_eq!(y_top(Scale::Count, 4.0), 4.0);
    }

    #[test]
    fn percent_formatting() {
        assert_eq!(format_percent(0.25), "25%");
        assert_eq!(format_percent(0.1234), "12.3%");
        assert_eq!(format_percent(1.0), "100%");
    }

    #[test]
    fn runs_split_at_gaps() {
        let p = |v: f64| {
            Some(Point {
                value: v,
                band: None,
                detail: String::new(),
            })
        };
        let points = vec![p(0.1), p(0.2), None, p(0.3)];
        let lengths: Vec<usize> = runs(&points).iter().map(Vec::len).collect();
        assert_eq!(lengths, vec![2, 1]);
    }

    #[test]
    fn dodging_is_symmetric_and_small() {
        assert_eq!(dodge(0, 1), 0.0);
        assert_eq!(dodge(0, 2), -dodge(1, 2));
        assert_eq!(dodge(1, 3), 0.0);
        assert!((0..40).all(|i| dodge(i, 40).abs() <= 12.0));
    }

    #[test]
    fn x_positions_stay_inside_the_plot() {
        for count in 1..40 {
            for i in 0..count {
                let x = x_at(i, count);
                assert!((LEFT..=WIDTH - RIGHT).contains(&x), "{i}/{count}: {x}");
            }
        }
    }
}
