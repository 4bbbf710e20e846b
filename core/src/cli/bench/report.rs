//! The results: a text table (medians, min–max, pairwise ratio, target),
//! and an SVG chart of start-latency distributions, hand-written (one row
//! per series: every sample as a dot, the min–max span, the median).

use std::fmt::Write as _;

use super::stats::{Measure, Summary, Unit};

fn summary_text(unit: Unit, samples: &[f64]) -> String {
    match Summary::of(samples) {
        Some(s) if s.n > 1 => format!(
            "{} [{}–{}]",
            unit.format(s.median),
            unit.format(s.min)
                .trim_end_matches(unit.symbol())
                .trim_end(),
            unit.format(s.max)
        ),
        Some(s) => unit.format(s.median),
        None => "-".into(),
    }
}

fn pairwise_text(m: &Measure) -> String {
    let Some(r) = Summary::of(&m.ratios()) else {
        return "-".into();
    };
    let mut out = if r.n > 1 {
        format!("{:.2}× [{:.2}–{:.2}]", r.median, r.min, r.max)
    } else {
        format!("{:.2}×", r.median)
    };
    if let Some(d) = Summary::of(&m.diffs()) {
        let sign = if d.median >= 0.0 { "+" } else { "" };
        let _ = write!(out, " ({sign}{})", m.unit.format(d.median));
    }
    out
}

fn verdict_text(m: &Measure) -> String {
    match (m.target_text(), m.met()) {
        (Some(t), Some(true)) => format!("{t}: met"),
        (Some(t), Some(false)) => format!("{t}: MISSED"),
        (Some(t), None) => format!("{t}: no data"),
        (None, _) => String::new(),
    }
}

/// The results as a text table, one row per measure (two lines when the
/// labels are long), section by section.
pub fn table(measures: &[Measure]) -> String {
    let header = [
        "#",
        "measure",
        "qvisor: median [min–max]",
        "baseline: median [min–max]",
        "A/B pairwise",
        "target",
    ];
    let rows: Vec<[String; 6]> = measures
        .iter()
        .map(|m| {
            let baseline =
                m.b.as_ref()
                    .map_or("-".into(), |b| summary_text(m.unit, &b.samples));
            [
                m.section.to_string(),
                m.title.clone(),
                summary_text(m.unit, &m.a.samples),
                baseline,
                pairwise_text(m),
                verdict_text(m),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut l = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w.saturating_sub(cell.chars().count());
            let _ = write!(l, "{cell}{}  ", " ".repeat(pad));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &header.map(String::from));
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    out.push('\n');
    for (m, row) in measures.iter().zip(&rows) {
        line(&mut out, row);
        let b =
            m.b.as_ref()
                .map_or(String::new(), |b| format!(" vs {}", b.label));
        let note = m.note.as_ref().map_or(String::new(), |n| format!("; {n}"));
        let _ = writeln!(out, "{:w$}  ({}{b}{note})", "", m.a.label, w = widths[0]);
    }
    out
}

/// Series colours: qvisor's in blue, baselines in grey or orange.
const QVISOR: &str = "#1f77b4";
const FLOOR: &str = "#7f7f7f";
const LIBVIRT: &str = "#ff7f0e";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A tick step giving about six ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 6.0).max(1e-9);
    let mag = decade(raw);
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// The power of ten at or below `x` (> 0). Found by stepping rather than
/// with `log10`/`powf`: those are the only libm functions qvisor used, and
/// without them the `qvisor` binary does not load libm at every start.
fn decade(x: f64) -> f64 {
    let mut mag = 1.0;
    while mag > x {
        mag /= 10.0;
    }
    while mag * 10.0 <= x {
        mag *= 10.0;
    }
    mag
}

/// An SVG strip chart of the series of `measures` (all in one unit): one
/// row per series, samples as dots, a line for min–max, a bar at the
/// median and the median's value at the right.
pub fn svg_chart(title: &str, measures: &[&Measure]) -> String {
    struct Row<'a> {
        label: String,
        samples: &'a [f64],
        colour: &'static str,
    }
    let mut rows = Vec::new();
    for m in measures {
        rows.push(Row {
            label: format!("{} — {}", m.title, m.a.label),
            samples: &m.a.samples,
            colour: QVISOR,
        });
        if let Some(b) = &m.b {
            let colour = if b.label.contains("libvirt") {
                LIBVIRT
            } else {
                FLOOR
            };
            rows.push(Row {
                label: format!("{} — {}", m.title, b.label),
                samples: &b.samples,
                colour,
            });
        }
    }
    let unit = measures.first().map_or(Unit::Ms, |m| m.unit);
    let max = rows
        .iter()
        .flat_map(|r| r.samples.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let step = tick_step(max * 1.05);
    let x_max = (max * 1.05 / step).ceil() * step;
    let (left, plot_w, right) = (430.0, 520.0, 90.0);
    let (top, row_h) = (50.0, 26.0);
    let height = top + row_h * rows.len() as f64 + 50.0;
    let width = left + plot_w + right;
    let x = |v: f64| left + v / x_max * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' \
         viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='12'>"
    );
    let _ = writeln!(s, "<rect width='100%' height='100%' fill='white'/>");
    let _ = writeln!(
        s,
        "<text x='{}' y='24' font-size='15' font-weight='bold'>{}</text>",
        10,
        esc(title)
    );
    // Grid and axis.
    let bottom = top + row_h * rows.len() as f64;
    let mut t = 0.0;
    while t <= x_max + step / 2.0 {
        let xt = x(t);
        let _ = writeln!(
            s,
            "<line x1='{xt:.1}' y1='{top}' x2='{xt:.1}' y2='{bottom}' stroke='#ddd'/>\
             <text x='{xt:.1}' y='{:.1}' text-anchor='middle' fill='#444'>{t}</text>",
            bottom + 16.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        "<text x='{:.1}' y='{:.1}' text-anchor='middle' fill='#444'>{}</text>",
        left + plot_w / 2.0,
        bottom + 36.0,
        unit.symbol()
    );
    for (i, r) in rows.iter().enumerate() {
        let cy = top + row_h * (i as f64 + 0.5);
        let _ = writeln!(
            s,
            "<text x='{:.1}' y='{:.1}' text-anchor='end'>{}</text>",
            left - 8.0,
            cy + 4.0,
            esc(&r.label)
        );
        let Some(sum) = Summary::of(r.samples) else {
            continue;
        };
        let _ = writeln!(
            s,
            "<line x1='{:.1}' y1='{cy:.1}' x2='{:.1}' y2='{cy:.1}' stroke='{}' stroke-width='1.5' opacity='0.6'/>",
            x(sum.min),
            x(sum.max),
            r.colour
        );
        for (k, v) in r.samples.iter().enumerate() {
            // A fixed jitter pattern keeps dots of equal values apart.
            let jitter = [-5.0, 4.0, -2.0, 6.0, 0.0, -6.0, 2.0, -3.5, 5.0, 3.0][k % 10];
            let _ = writeln!(
                s,
                "<circle cx='{:.1}' cy='{:.1}' r='3' fill='{}' fill-opacity='0.45'/>",
                x(*v),
                cy + jitter,
                r.colour
            );
        }
        let xm = x(sum.median);
        let _ = writeln!(
            s,
            "<line x1='{xm:.1}' y1='{:.1}' x2='{xm:.1}' y2='{:.1}' stroke='{}' stroke-width='3'/>\
             <text x='{:.1}' y='{:.1}' fill='#222'>{}</text>",
            cy - 9.0,
            cy + 9.0,
            r.colour,
            left + plot_w + 8.0,
            cy + 4.0,
            esc(&unit.format(sum.median))
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::stats::Target;

    fn sample() -> Measure {
        let mut m = Measure::new(
            "start-kvm",
            1,
            "start → running, KVM",
            Unit::Ms,
            "qvisor start",
            Some("plain QEMU floor"),
        )
        .with_target(Target::Ratio(1.5));
        m.a.samples = vec![60.0, 62.0, 70.0];
        if let Some(b) = m.b.as_mut() {
            b.samples = vec![50.0, 52.0, 50.0];
        }
        m
    }

    #[test]
    fn the_table_shows_medians_ranges_ratio_and_verdict() {
        let t = table(&[sample()]);
        assert!(t.contains("62.0 ms [60.0–70.0 ms]"), "{t}");
        assert!(t.contains("1.20× [1.19–1.40]"), "{t}");
        assert!(t.contains("≤ 1.5× baseline: met"), "{t}");
    }

    #[test]
    fn the_chart_has_a_row_per_series_and_a_dot_per_sample() {
        let m = sample();
        let svg = svg_chart("start latency", &[&m]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 6);
        assert!(svg.contains("plain QEMU floor"));
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(300.0), 50.0);
        assert_eq!(tick_step(6.0), 1.0);
        assert!((tick_step(0.3) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn decade_is_the_power_of_ten_at_or_below() {
        assert_eq!(decade(1.0), 1.0);
        assert_eq!(decade(999.0), 100.0);
        assert_eq!(decade(1000.0), 1000.0);
        assert!((decade(0.05) - 0.01).abs() < 1e-15);
    }
}
