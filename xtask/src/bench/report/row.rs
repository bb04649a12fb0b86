//! One row of the table and its JSON twin, the stamp of the run both files
//! carry, and how the cells write numbers (thousands, milliseconds, ratios,
//! MiB) and series (throughput, latency).

use std::time::Duration;

use serde_json::Value;

use crate::bench::figures::Series;

/// One row of the table and its JSON twin.
pub(super) struct Row {
    pub(super) number: &'static str,
    pub(super) id: String,
    pub(super) figure: String,
    pub(super) keysd: String,
    pub(super) baseline: String,
    pub(super) ratio: String,
    pub(super) target: String,
    pub(super) met: Option<bool>,
    pub(super) json: Value,
}

impl Row {
    /// The cells as the table and the progress lines show them: number,
    /// figure, keysd, baseline, ratio, target, met.
    pub(super) fn cells(&self) -> [&str; 7] {
        [self.number, &self.figure, &self.keysd, &self.baseline, &self.ratio, &self.target, yes_no(self.met)]
    }
}

/// When the run was written, from which commit, and how long it took.
pub(super) struct Stamp {
    pub(super) date: String,
    pub(super) commit: String,
    pub(super) elapsed: Duration,
}

pub(super) fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (index, character) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 && character != '-' {
            out.push(',');
        }
        out.push(character);
    }
    out
}

pub(super) fn ms(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_owned()
    } else if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.2} ms")
    }
}

pub(super) fn ratio_text(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}")
    } else {
        "n/a".to_owned()
    }
}

pub(super) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn errors_note(series: &Series) -> String {
    match series.errors() {
        0 => String::new(),
        errors => format!(" · **{errors} errors** ({})", series.first_error().unwrap_or("?").replace('|', "/")),
    }
}

pub(super) fn throughput(series: &Series, unit: &str) -> String {
    format!(
        "{} {unit} · p50 {} · p99 {}{}",
        thousands(series.rps()),
        ms(series.p50()),
        ms(series.p99()),
        errors_note(series)
    )
}

pub(super) fn latency(series: &Series) -> String {
    format!("p50 {} · p99 {}{}", ms(series.p50()), ms(series.p99()), errors_note(series))
}

pub(super) fn yes_no(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    }
}

pub(super) fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(f64::NAN), "n/a");
        assert_eq!(ms(0.1234), "0.12 ms");
        assert_eq!(ms(12.34), "12.3 ms");
        assert_eq!(ms(1234.0), "1234 ms");
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 99.0), 4.0);
    }
}
