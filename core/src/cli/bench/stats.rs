//! Samples, summaries, A/B comparisons pair by pair, and the targets a
//! measure is held to.

use serde_json::{json, Value};

/// Median, extremes and count of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (mean of the two middle samples for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// The summary of `samples`; `None` when there are none (or only NaNs).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            n,
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    fn to_json(self) -> Value {
        json!({ "n": self.n, "median": self.median, "min": self.min, "max": self.max })
    }
}

/// The unit of a measure's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Mebibytes (resident memory).
    MiB,
}

impl Unit {
    /// The symbol printed after a value.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Us => "µs",
            Unit::MiB => "MiB",
        }
    }

    /// A value with a precision that suits its size.
    pub fn format(self, v: f64) -> String {
        let digits = if v.abs() >= 100.0 {
            0
        } else if v.abs() >= 10.0 {
            1
        } else {
            2
        };
        format!("{v:.digits$} {}", self.symbol())
    }
}

/// What a measure must achieve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Median of the pairwise ratios A/B at most this.
    Ratio(f64),
    /// Median of the pairwise differences A−B at most this (in the unit).
    Overhead(f64),
    /// Median of A at most this (in the unit).
    Max(f64),
}

impl Target {
    fn describe(self, unit: Unit) -> String {
        match self {
            Target::Ratio(r) => format!("≤ {r}× baseline"),
            Target::Overhead(d) => format!("≤ +{}", unit.format(d)),
            Target::Max(m) => format!("≤ {}", unit.format(m)),
        }
    }
}

/// One side of a measure: a label and its samples, in run order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// What was run (e.g. `qvisor start (embedded CLI)`).
    pub label: String,
    /// The samples, in the order they were taken.
    pub samples: Vec<f64>,
}

impl Series {
    /// An empty series named `label`.
    pub fn new(label: impl Into<String>) -> Series {
        Series {
            label: label.into(),
            samples: Vec::new(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "samples": self.samples,
            "summary": Summary::of(&self.samples).map(Summary::to_json),
        })
    }
}

/// A measure: qvisor's series (A), its baseline (B) taken in the same
/// interleaved run (A B A B ...), and the target.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// Stable identifier (`start-kvm`, `list-1000-virsh`).
    pub id: String,
    /// The section number (1-7).
    pub section: u8,
    /// What is measured.
    pub title: String,
    /// The unit of both series.
    pub unit: Unit,
    /// qvisor.
    pub a: Series,
    /// The baseline, when there is one.
    pub b: Option<Series>,
    /// The bar.
    pub target: Option<Target>,
    /// Conditions or remarks printed with the result.
    pub note: Option<String>,
}

impl Measure {
    /// A measure without samples yet.
    pub fn new(id: &str, section: u8, title: &str, unit: Unit, a: &str, b: Option<&str>) -> Self {
        Measure {
            id: id.to_string(),
            section,
            title: title.to_string(),
            unit,
            a: Series::new(a),
            b: b.map(Series::new),
            target: None,
            note: None,
        }
    }

    /// Sets the target.
    pub fn with_target(mut self, t: Target) -> Self {
        self.target = Some(t);
        self
    }

    /// Pairs (a_i, b_i) in run order.
    fn pairs(&self) -> Vec<(f64, f64)> {
        match &self.b {
            Some(b) => self
                .a
                .samples
                .iter()
                .copied()
                .zip(b.samples.iter().copied())
                .collect(),
            None => Vec::new(),
        }
    }

    /// A_i / B_i for every pair.
    pub fn ratios(&self) -> Vec<f64> {
        self.pairs()
            .into_iter()
            .filter(|(_, b)| *b > 0.0)
            .map(|(a, b)| a / b)
            .collect()
    }

    /// A_i − B_i for every pair.
    pub fn diffs(&self) -> Vec<f64> {
        self.pairs().into_iter().map(|(a, b)| a - b).collect()
    }

    /// The figure the target is checked against.
    pub fn target_value(&self) -> Option<f64> {
        let samples = match self.target? {
            Target::Ratio(_) => self.ratios(),
            Target::Overhead(_) => self.diffs(),
            Target::Max(_) => self.a.samples.clone(),
        };
        Summary::of(&samples).map(|s| s.median)
    }

    /// Whether the target is met; `None` without a target or samples.
    pub fn met(&self) -> Option<bool> {
        let v = self.target_value()?;
        Some(match self.target? {
            Target::Ratio(r) => v <= r,
            Target::Overhead(d) => v <= d,
            Target::Max(m) => v <= m,
        })
    }

    /// The target as text (`≤ 1.5× baseline`).
    pub fn target_text(&self) -> Option<String> {
        self.target.map(|t| t.describe(self.unit))
    }

    /// The measure as JSON (samples, summaries, pairwise figures, verdict).
    pub fn to_json(&self) -> Value {
        let target = self.target.map(|t| {
            let (kind, value) = match t {
                Target::Ratio(r) => ("ratio", r),
                Target::Overhead(d) => ("overhead", d),
                Target::Max(m) => ("max", m),
            };
            json!({
                "kind": kind,
                "value": value,
                "text": t.describe(self.unit),
                "measured": self.target_value(),
                "met": self.met(),
            })
        });
        json!({
            "id": self.id,
            "section": self.section,
            "title": self.title,
            "unit": self.unit.symbol(),
            "a": self.a.to_json(),
            "b": self.b.as_ref().map(Series::to_json),
            "pairwise": self.b.as_ref().map(|_| json!({
                "ratio": Summary::of(&self.ratios()).map(Summary::to_json),
                "diff": Summary::of(&self.diffs()).map(Summary::to_json),
                "ratios": self.ratios(),
            })),
            "target": target,
            "note": self.note,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(a: &[f64], b: &[f64], t: Target) -> Measure {
        let mut m = Measure::new("m", 1, "m", Unit::Ms, "a", Some("b")).with_target(t);
        m.a.samples = a.to_vec();
        if let Some(s) = m.b.as_mut() {
            s.samples = b.to_vec();
        }
        m
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (4, 2.5, 1.0, 4.0));
    }

    #[test]
    fn summary_of_nothing_is_none() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn ratios_are_taken_pair_by_pair_not_from_the_medians() {
        // Machine noise hits both halves of a pair: pairwise ratios stay 2.
        let m = measure(&[2.0, 20.0, 4.0], &[1.0, 10.0, 2.0], Target::Ratio(1.5));
        assert_eq!(m.ratios(), vec![2.0, 2.0, 2.0]);
        assert_eq!(m.met(), Some(false));
    }

    #[test]
    fn overhead_target_uses_the_median_difference() {
        let m = measure(
            &[110.0, 140.0, 90.0],
            &[100.0, 100.0, 60.0],
            Target::Overhead(35.0),
        );
        assert_eq!(m.target_value(), Some(30.0));
        assert_eq!(m.met(), Some(true));
    }

    #[test]
    fn max_target_needs_no_baseline() {
        let mut m = Measure::new("rss", 4, "rss", Unit::MiB, "qvisord", None)
            .with_target(Target::Max(12.0));
        m.a.samples = vec![9.0, 13.0, 10.0];
        assert_eq!(m.met(), Some(true));
        assert!(m.to_json()["pairwise"].is_null());
    }

    #[test]
    fn a_measure_without_samples_has_no_verdict() {
        let m = measure(&[], &[], Target::Ratio(1.3));
        assert_eq!(m.met(), None);
    }
}
