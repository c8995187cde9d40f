//! Go `time.Duration` text (`"40s"`, `"1m30s"`, `"300ms"`), as Kubernetes flags and
//! config files write durations.

/// Parse a Go duration. Negative durations are refused.
pub fn parse(text: &str) -> Result<std::time::Duration, String> {
    let nanos = crate::proto::values::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e}"))?;
    u64::try_from(nanos)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| format!("invalid duration {text:?}: must not be negative"))
}

/// Format like Go's `Duration.String()` (`1h0m0s`).
pub fn format(d: std::time::Duration) -> String {
    crate::proto::values::format_duration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(super::parse("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(super::parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(super::parse("300ms"), Ok(Duration::from_millis(300)));
        assert!(super::parse("-1s").is_err());
        assert!(super::parse("soon").is_err());
        assert_eq!(super::format(Duration::from_secs(3600)), "1h0m0s");
    }
}
