//! Percentiles and the TSV lines every driver appends to its output file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// Nearest-rank percentile (`q` in 0..=1) of unsorted values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// "p50 … p99 … max …" of values in milliseconds.
pub fn summary(values: &[f64]) -> String {
    format!(
        "n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        values.len(),
        percentile(values, 0.5),
        percentile(values, 0.99),
        percentile(values, 1.0)
    )
}

/// Appends TSV rows to `path` (created when missing).
pub fn append(path: &Path, rows: &[Vec<String>]) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    for r in rows {
        writeln!(f, "{}", r.join("\t"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }
}
