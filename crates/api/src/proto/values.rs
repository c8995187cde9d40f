//! The JSON forms of the special scalar-like messages: RFC 3339 times and Go duration
//! strings.
//!
//! `chrono` does the calendar work. Go's duration syntax (`1h0m0s`, `1.5s`, `300ms`) is
//! what `metav1.Duration` uses in JSON; no well-kept crate prints it exactly as Go's
//! `time.Duration.String` does, so formatting and parsing are written out here.

use chrono::{DateTime, SecondsFormat, Utc};

use super::ProtoError;

const NANOS_PER_SECOND: i128 = 1_000_000_000;

fn time_from(seconds: i64, nanos: i64) -> Result<DateTime<Utc>, ProtoError> {
    let total = i128::from(seconds) * NANOS_PER_SECOND + i128::from(nanos);
    let secs = i64::try_from(total.div_euclid(NANOS_PER_SECOND));
    let nsec = u32::try_from(total.rem_euclid(NANOS_PER_SECOND));
    match (secs, nsec) {
        (Ok(secs), Ok(nsec)) => DateTime::from_timestamp(secs, nsec),
        _ => None,
    }
    .filter(|t| (0..=9999).contains(&chrono::Datelike::year(t)))
    .ok_or_else(|| ProtoError::Invalid(format!("time out of range: {seconds}s {nanos}ns")))
}

/// `meta.v1.Time` in JSON: whole seconds, UTC (`2006-01-02T15:04:05Z`). Upstream drops
/// the nanoseconds when reading a protobuf `Time`.
pub(crate) fn format_time(seconds: i64) -> Result<String, ProtoError> {
    Ok(time_from(seconds, 0)?.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// `meta.v1.MicroTime` in JSON: six fractional digits, UTC. Upstream truncates the
/// nanoseconds towards zero to whole microseconds before normalising.
pub(crate) fn format_micro_time(seconds: i64, nanos: i64) -> Result<String, ProtoError> {
    let nanos = nanos - nanos % 1_000;
    Ok(time_from(seconds, nanos)?.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// An RFC 3339 time as `(seconds, nanos)` since the epoch.
pub(crate) fn parse_time(text: &str) -> Result<(i64, i32), ProtoError> {
    let t = DateTime::parse_from_rfc3339(text)
        .map_err(|e| ProtoError::Invalid(format!("invalid time {text:?}: {e}")))?;
    let nanos = i32::try_from(t.timestamp_subsec_nanos())
        .map_err(|_| ProtoError::Invalid(format!("invalid time {text:?}")))?;
    Ok((t.timestamp(), nanos))
}

/// Appends `value / unit` with the fraction's trailing zeros dropped (`1500, 1000` →
/// `1.5`).
fn push_fraction(out: &mut String, value: u64, unit: u64, digits: usize) {
    out.push_str(&(value / unit).to_string());
    let frac = value % unit;
    if frac != 0 {
        let text = format!("{frac:0digits$}");
        out.push('.');
        out.push_str(text.trim_end_matches('0'));
    }
}

/// Go's `time.Duration.String`: `0s`, `1.5µs`, `300ms`, `1m30s`, `1h0m0s`.
pub(crate) fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    let u = nanos.unsigned_abs();
    if u < 1_000 {
        push_fraction(&mut out, u, 1, 0);
        out.push_str("ns");
    } else if u < 1_000_000 {
        push_fraction(&mut out, u, 1_000, 3);
        out.push_str("µs");
    } else if u < 1_000_000_000 {
        push_fraction(&mut out, u, 1_000_000, 6);
        out.push_str("ms");
    } else {
        let seconds = u / 1_000_000_000;
        let (hours, minutes) = (seconds / 3600, (seconds / 60) % 60);
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        push_fraction(
            &mut out,
            (seconds % 60) * 1_000_000_000 + u % 1_000_000_000,
            1_000_000_000,
            9,
        );
        out.push('s');
    }
    out
}

/// Go's `time.ParseDuration`: an optional sign and a sequence of decimal numbers with
/// units (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`); `0` alone is allowed.
pub(crate) fn parse_duration(text: &str) -> Result<i64, ProtoError> {
    let invalid = || ProtoError::Invalid(format!("invalid duration {text:?}"));
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(tail) => {
                let n = tail.bytes().take_while(u8::is_ascii_digit).count();
                tail.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(invalid()),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(invalid)?;
        // The fraction, digit by digit, as Go does (excess precision is truncated).
        let mut unit_fraction = scale;
        for digit in frac_part.bytes() {
            unit_fraction /= 10;
            value += u128::from(digit - b'0') * unit_fraction;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > 1u128 << 63 {
            return Err(invalid());
        }
        rest = after;
    }
    if negative {
        i64::try_from(-(total as i128)).map_err(|_| invalid())
    } else {
        i64::try_from(total).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_661_001_000_000, "1h1m1.001s"),
            (-2_000_000_000, "-2s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format_duration(nanos), want, "{nanos}");
            assert_eq!(parse_duration(want), Ok(nanos), "{want}");
        }
    }

    #[test]
    fn durations_parse_like_go() {
        let cases = [
            ("0", Some(0)),
            ("5m", Some(300_000_000_000)),
            ("1h30m", Some(5_400_000_000_000)),
            ("1.5h", Some(5_400_000_000_000)),
            (".5s", Some(500_000_000)),
            ("10us", Some(10_000)),
            ("+3s", Some(3_000_000_000)),
            ("", None),
            ("5", None),
            ("5x", None),
            ("-", None),
            (".s", None),
            ("9223372036854775808ns", None),
            ("3000000h", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), want, "{text}");
        }
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(format_time(0).as_deref(), Ok("1970-01-01T00:00:00Z"));
        assert_eq!(
            format_time(1_700_000_000).as_deref(),
            Ok("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            format_micro_time(1_700_000_000, 123_456_789).as_deref(),
            Ok("2023-11-14T22:13:20.123456Z")
        );
        assert_eq!(
            format_micro_time(1, -1).as_deref(),
            Ok("1970-01-01T00:00:01.000000Z")
        );
        assert_eq!(
            format_micro_time(1, -1_500).as_deref(),
            Ok("1970-01-01T00:00:00.999999Z")
        );
        assert!(format_time(i64::MAX).is_err());
        assert!(format_time(-70_000_000_000).is_err());
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok((1_700_000_000, 0)));
        assert_eq!(
            parse_time("2023-11-15T00:13:20.5+02:00"),
            Ok((1_700_000_000, 500_000_000))
        );
        assert!(parse_time("yesterday").is_err());
    }
}
