//! The page's charts, drawn here as SVG: one time axis, a few series, a y axis with
//! round ticks, a marker per stored point, and the data the page's script needs for hover
//! (`data-t` on the chart, `data-v` on each series). No script draws anything: a chart
//! that changes is fetched again.

use std::fmt::Write;

use super::format::{utc_label, Unit};

/// One line of a chart.
#[derive(Debug, Clone)]
pub(crate) struct Line<'a> {
    /// The legend's name.
    pub(crate) name: &'a str,
    /// One value per timestamp (`None`: nothing stored for that row).
    pub(crate) values: &'a [Option<f64>],
}

/// Width and height of a full chart, in SVG user units (the element scales to its box).
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 24.0;

/// A chart of `lines` over `timestamps` (seconds), values shown in `unit`.
pub(crate) fn chart(title: &str, timestamps: &[i64], lines: &[Line<'_>], unit: Unit) -> String {
    let mut svg = String::with_capacity(4096 + timestamps.len() * 40 * lines.len().max(1));
    let (t0, t1) = match (timestamps.first(), timestamps.last()) {
        (Some(&a), Some(&b)) if b > a => (a, b),
        (Some(&a), _) => (a - 60, a),
        _ => (0, 1),
    };
    let (lo, hi) = y_range(lines, unit);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * plot_w;
    let y = |v: f64| TOP + plot_h - (v - lo) / (hi - lo) * plot_h;
    let ts: Vec<String> = timestamps.iter().map(|t| t.to_string()).collect();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" data-unit="{unit}" data-start="{t0}" data-end="{t1}" data-t="{ts}">"#,
        title = escape(title),
        unit = unit.as_str(),
        ts = ts.join(","),
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    // Horizontal grid lines with their labels.
    for tick in y_ticks(lo, hi) {
        let yy = y(tick);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}"/><text class="ylabel" x="{:.1}" y="{:.1}">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 4.0,
            yy + 4.0,
            unit.format(tick)
        );
    }
    // Time labels: five across, the format fitting the span.
    let span = t1 - t0;
    for i in 0..5 {
        let t = t0 + span * i / 4;
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r#"<text class="xlabel" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            x(t),
            HEIGHT - 6.0,
            utc_label(t, span)
        );
    }
    for (i, line) in lines.iter().enumerate() {
        let mut path = String::new();
        let mut pen_down = false;
        let mut dots = String::new();
        let mut data = String::new();
        for (j, (&t, v)) in timestamps.iter().zip(line.values.iter()).enumerate() {
            if j > 0 {
                data.push(',');
            }
            match v {
                Some(v) if v.is_finite() => {
                    let (px, py) = (x(t), y(*v));
                    let _ = write!(path, "{}{px:.1},{py:.1}", if pen_down { 'L' } else { 'M' });
                    let _ = write!(
                        dots,
                        r#"<circle class="pt" cx="{px:.1}" cy="{py:.1}" r="1.6"/>"#
                    );
                    let _ = write!(data, "{v}");
                    pen_down = true;
                }
                _ => pen_down = false,
            }
        }
        let _ = write!(
            svg,
            r#"<g class="series s{i}" data-name="{name}" data-v="{data}"><path d="{path}"/>{dots}</g>"#,
            name = escape(line.name),
        );
    }
    let _ = write!(
        svg,
        r#"<line class="cursor" x1="0" x2="0" y1="{TOP}" y2="{:.1}" visibility="hidden"/><rect class="hover" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" data-left="{LEFT}" data-width="{plot_w}" data-vbw="{WIDTH}"/></svg>"#,
        TOP + plot_h
    );
    svg
}

/// A small trend line without axes (the remote page's lists): `values` scaled into a
/// 120 × 24 box.
pub(crate) fn sparkline(values: &[Option<f64>]) -> String {
    let finite: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let mut svg = String::from(r#"<svg class="spark" viewBox="0 0 120 24" aria-hidden="true">"#);
    if let (Some(lo), Some(hi)) = (
        finite.iter().copied().reduce(f64::min),
        finite.iter().copied().reduce(f64::max),
    ) {
        let span = if hi > lo { hi - lo } else { 1.0 };
        let n = values.len().max(2) - 1;
        let mut path = String::new();
        let mut pen_down = false;
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) if v.is_finite() => {
                    let px = i as f64 * 120.0 / n as f64;
                    let py = 22.0 - (v - lo) / span * 20.0;
                    let _ = write!(path, "{}{px:.1},{py:.1}", if pen_down { 'L' } else { 'M' });
                    pen_down = true;
                }
                _ => pen_down = false,
            }
        }
        let _ = write!(svg, r#"<path d="{path}"/>"#);
    }
    svg.push_str("</svg>");
    svg
}

/// The y range of `lines`: from zero (or the minimum, when negative) to a round maximum;
/// a share runs 0 … 1 at least.
fn y_range(lines: &[Line<'_>], unit: Unit) -> (f64, f64) {
    let mut lo = 0.0f64;
    let mut hi = if unit == Unit::Share { 1.0 } else { 0.0f64 };
    for v in lines.iter().flat_map(|l| l.values.iter().flatten()) {
        if v.is_finite() {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let step = nice_step((hi - lo) / 4.0);
    ((lo / step).floor() * step, (hi / step).ceil() * step)
}

/// A round step (1, 2 or 5 × a power of ten) at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn y_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = nice_step((hi - lo) / 4.0);
    let mut ticks = Vec::new();
    let mut t = lo;
    while t <= hi + step / 2.0 && ticks.len() < 12 {
        ticks.push(t);
        t += step;
    }
    ticks
}

/// Escapes text for an attribute or element of the SVG.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_point_gets_a_marker_and_gaps_break_the_line() {
        let ts = [60, 120, 180, 240];
        let values = [Some(0.5), None, Some(0.25), Some(1.0)];
        let svg = chart(
            "cpu",
            &ts,
            &[Line {
                name: "cpu",
                values: &values,
            }],
            Unit::Share,
        );
        assert_eq!(svg.matches(r#"class="pt""#).count(), 3);
        assert_eq!(svg.matches('M').count() - svg.matches("Mbit").count(), 2);
        assert!(svg.contains(r#"data-v="0.5,,0.25,1""#));
        assert!(svg.contains(r#"data-t="60,120,180,240""#));
    }

    #[test]
    fn the_y_axis_ends_on_a_round_number_above_the_maximum() {
        let values = [Some(3.0), Some(87.0)];
        let (lo, hi) = y_range(
            &[Line {
                name: "x",
                values: &values,
            }],
            Unit::Plain,
        );
        assert_eq!((lo, hi), (0.0, 100.0));
    }

    #[test]
    fn names_are_escaped() {
        let svg = chart("<a>", &[1, 2], &[], Unit::Plain);
        assert!(svg.contains("&lt;a&gt;") && !svg.contains("<a>"));
    }
}
