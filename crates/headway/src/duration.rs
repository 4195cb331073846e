//! Durations as people type them in flags: Go's `time.ParseDuration` forms
//! (`90s`, `1h30m`, `1.5h`, `300ms`) and the longer units headscale also
//! accepts (`7d`, `2w`, `1y` = 365 days).

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is not a duration: {}; write e.g. 30m, 24h, 1h30m, 7d or 1y",
            self.text, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

const NANOS_PER_SEC: u128 = 1_000_000_000;

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        "w" => 7 * 86_400 * NANOS_PER_SEC,
        "y" => 365 * 86_400 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Parses a non-negative duration such as `24h` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        text: text.to_string(),
        reason,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s.starts_with('-') {
        return Err(err("it is negative"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(f) => {
                let len = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                f.split_at(len)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(err("a number is missing before a unit"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(err("a unit is missing (ns, us, ms, s, m, h, d, w or y)"));
        }
        let per_unit = unit_nanos(unit)
            .ok_or_else(|| err("the unit is unknown (use ns, us, ms, s, m, h, d, w or y)"))?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err("it is too long"))?
        };
        let mut part = whole
            .checked_mul(per_unit)
            .ok_or_else(|| err("it is too long"))?;
        // Fractions beyond nanosecond precision do not matter; keep 18 digits.
        let fraction = &fraction[..fraction.len().min(18)];
        if !fraction.is_empty() {
            let digits: u128 = fraction
                .parse()
                .map_err(|_| err("the fraction is not a number"))?;
            part += digits * per_unit / 10u128.pow(fraction.len() as u32);
        }
        total = total
            .checked_add(part)
            .ok_or_else(|| err("it is too long"))?;
        rest = after;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| err("it is too long"))?;
    // The remainder is below one second, so it fits.
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn go_forms() {
        assert_eq!(parse_duration("90s").unwrap(), secs(90));
        assert_eq!(parse_duration("30m").unwrap(), secs(1800));
        assert_eq!(parse_duration("24h").unwrap(), secs(86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), secs(5400));
        assert_eq!(parse_duration("1h30m15s").unwrap(), secs(5415));
        assert_eq!(parse_duration("1.5h").unwrap(), secs(5400));
        assert_eq!(parse_duration(".5m").unwrap(), secs(30));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("2us").unwrap(), Duration::from_micros(2));
        assert_eq!(parse_duration("2µs").unwrap(), Duration::from_micros(2));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("+5s").unwrap(), secs(5));
        assert_eq!(parse_duration(" 5s ").unwrap(), secs(5));
    }

    #[test]
    fn longer_units() {
        assert_eq!(parse_duration("7d").unwrap(), secs(7 * 86_400));
        assert_eq!(parse_duration("2w").unwrap(), secs(14 * 86_400));
        assert_eq!(parse_duration("1y").unwrap(), secs(365 * 86_400));
        assert_eq!(parse_duration("1d12h").unwrap(), secs(36 * 3600));
    }

    #[test]
    fn refusals_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("-1h", "negative"),
            ("10", "unit is missing"),
            ("h", "number is missing"),
            ("5x", "unknown"),
            ("1h5", "unit is missing"),
            ("99999999999999999999999999999y", "too long"),
        ] {
            let e = parse_duration(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
            assert!(e.contains("24h"), "{e}");
        }
    }
}
