//! Words for people: counts with the right plural ("1 source", "2 sources")
//! and sizes and throughput in MiB. Shared by step messages and the engine's
//! log lines, so every line says it the same way.

/// `n` and `noun`, plural unless `n` is 1: `count(1, "source")` is
/// "1 source", `count(3, "entry")` is "3 entries".
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {}", plural(noun))
    }
}

/// The plural of an English noun as runbook's messages use them.
pub fn plural(noun: &str) -> String {
    if let Some(stem) = noun.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if noun.ends_with('s') || noun.ends_with("sh") || noun.ends_with("ch") || noun.ends_with('x') {
        return format!("{noun}es");
    }
    format!("{noun}s")
}

/// `bytes` in MiB with one decimal: "4.2 MiB" (also below 1 MiB: "0.1 MiB",
/// so a column of step lines reads in one unit).
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// Throughput in MiB/s with one decimal, `None` when no time passed.
pub fn mib_per_second(bytes: u64, seconds: f64) -> Option<String> {
    (seconds > 0.0).then(|| format!("{:.1} MiB/s", bytes as f64 / 1_048_576.0 / seconds))
}

/// A size for people, in the unit that fits: "512 B", "3.4 MiB", "41.3 GiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sizes_and_rates_read_right() {
        assert_eq!(count(1, "source"), "1 source");
        assert_eq!(count(0, "source"), "0 sources");
        assert_eq!(count(2, "entry"), "2 entries");
        assert_eq!(count(2, "key"), "2 keys");
        assert_eq!(count(3, "branch"), "3 branches");
        assert_eq!(count(1, "undo action"), "1 undo action");
        assert_eq!(mib(4_404_019), "4.2 MiB");
        assert_eq!(
            mib_per_second(10 * 1_048_576, 4.0).as_deref(),
            Some("2.5 MiB/s")
        );
        assert_eq!(mib_per_second(10, 0.0), None);
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
    }
}
