//! CronJob schedules: upstream's `robfig/cron` `ParseStandard` syntax and the
//! controller's "most recent missed time" arithmetic (upstream `cronjob/utils.go`).
//!
//! Five-field expressions go to the `croner` crate (configured for exactly five
//! fields, no seconds or years, and `5/10` style steps). Before that, what robfig
//! accepts and croner reads differently is rewritten here: `?` is `*` in any field,
//! a `*/1` day field counts as `*` for the day-of-month/day-of-week OR rule, the
//! descriptors (`@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`,
//! `@yearly`/`@annually`) are expanded, `@every <go duration>` is a fixed interval
//! (croner has none), and a `TZ=`/`CRON_TZ=` prefix picks the zone. Zones come from
//! `jiff`'s bundled IANA database, as upstream bundles Go's.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Errors from schedules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("{0}")]
    Parse(String),
    #[error("time difference between two schedules is less than 1 second")]
    Degenerate,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<Cron>),
    /// `@every`: whole seconds, at least one.
    Every(Duration),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
}

/// Parse a Go duration (`1h30m`, `90s`, `1.5h`, `300ms`). Written by hand: Go's
/// syntax (any unit may carry a fraction, `µs`/`us`) is not a format `jiff` parses.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() || neg {
        // Negative intervals are meaningless for schedules.
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let units: [(&str, f64); 8] = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("μs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ];
        let (unit, factor) = units.iter().find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        total += number * factor;
    }
    Duration::try_from_secs_f64(total).ok()
}

fn expand_descriptor(spec: &str) -> Result<Option<&'static str>, ScheduleError> {
    Ok(Some(match spec {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        s if s.starts_with("@every ") => return Ok(None),
        s => {
            return Err(ScheduleError::Parse(format!(
                "unrecognized descriptor: {s}"
            )));
        }
    }))
}

impl Schedule {
    /// Parse `spec` (optionally prefixed `TZ=<zone> `) in zone `tz` by default.
    pub fn parse(spec: &str, tz: TimeZone) -> Result<Schedule, ScheduleError> {
        let mut spec = spec.trim();
        let mut tz = tz;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let (prefix, rest) = spec.split_once(char::is_whitespace).unwrap_or((spec, ""));
            let name = prefix.split_once('=').map_or("", |(_, n)| n);
            tz = TimeZone::get(name)
                .map_err(|e| ScheduleError::Parse(format!("provided bad location {name}: {e}")))?;
            spec = rest.trim();
        }
        if spec.is_empty() {
            return Err(ScheduleError::Parse("empty spec string".into()));
        }
        let fields = if spec.starts_with('@') {
            match expand_descriptor(spec)? {
                Some(f) => f.to_string(),
                None => {
                    let text = spec["@every ".len()..].trim();
                    let d = parse_go_duration(text).ok_or_else(|| {
                        ScheduleError::Parse(format!(
                            "failed to parse duration {spec}: time: invalid duration {text:?}"
                        ))
                    })?;
                    let secs = d.as_secs().max(1);
                    return Ok(Schedule {
                        kind: Kind::Every(Duration::from_secs(secs)),
                        tz,
                    });
                }
            }
        } else {
            spec.to_string()
        };
        let parts: Vec<String> = fields
            .split_whitespace()
            .enumerate()
            .map(|(i, f)| {
                let f = f.replace('?', "*");
                if (i == 2 || i == 4) && f == "*/1" {
                    "*".to_string()
                } else {
                    f
                }
            })
            .collect();
        if parts.len() != 5 {
            return Err(ScheduleError::Parse(format!(
                "expected exactly 5 fields, found {}: [{}]",
                parts.len(),
                parts.join(" ")
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .dom_and_dow(false)
            .sloppy_ranges(true)
            .build()
            .parse(&parts.join(" "))
            .map_err(|e| ScheduleError::Parse(e.to_string()))?;
        Ok(Schedule {
            kind: Kind::Cron(Box::new(cron)),
            tz,
        })
    }

    /// The zone the schedule runs in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The first activation strictly after `after` (`None` if it never fires).
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Cron(c) => {
                let z = after.to_zoned(self.tz.clone());
                c.find_next_occurrence(&z, false)
                    .ok()
                    .map(|z| z.timestamp())
            }
            Kind::Every(d) => {
                // Upstream `ConstantDelaySchedule`: whole seconds after `after`.
                let base = Timestamp::from_second(after.as_second()).ok()?;
                base.checked_add(SignedDuration::try_from(*d).ok()?).ok()
            }
        }
    }
}

/// How many start times were missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than 100: upstream warns with `TooManyMissedTimes`.
    Many,
}

/// What [`most_recent`] works from.
#[derive(Clone, Copy, Debug)]
pub struct Times {
    pub created: Timestamp,
    pub last_schedule: Option<Timestamp>,
    pub starting_deadline_seconds: Option<i64>,
    pub now: Timestamp,
}

/// Upstream `mostRecentScheduleTime`: the time counting starts from, the latest
/// activation at or before `now` (if any since then), and how many were missed.
pub fn most_recent(
    sched: &Schedule,
    t: Times,
    include_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, Missed), ScheduleError> {
    let mut earliest = t.last_schedule.unwrap_or(t.created);
    if include_deadline
        && let Some(d) = t.starting_deadline_seconds
        && let Ok(deadline) = t.now.checked_sub(SignedDuration::from_secs(d))
        && deadline > earliest
    {
        earliest = deadline;
    }
    let Some(t1) = sched.next(earliest) else {
        return Err(ScheduleError::Degenerate);
    };
    if t.now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = sched.next(t1) else {
        return Err(ScheduleError::Degenerate);
    };
    if t.now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = t2.duration_since(t1).as_secs_f64().round() as i64;
    if between < 1 {
        return Err(ScheduleError::Degenerate);
    }
    let elapsed = t.now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    let start = t1
        .checked_add(SignedDuration::from_secs((missed - 2) * between))
        .unwrap_or(t1);
    let mut most_recent = None;
    let mut cursor = sched.next(start);
    let mut steps = 0;
    while let Some(c) = cursor {
        if c > t.now || steps > 10_000 {
            break;
        }
        most_recent = Some(c);
        cursor = sched.next(c);
        steps += 1;
    }
    let level = if missed > 100 {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok((earliest, most_recent, level))
}

/// Upstream `nextScheduleTimeDuration`: how long until the next activation, plus
/// 100 ms against clock skew.
pub fn next_delay(sched: &Schedule, t: Times) -> Duration {
    let base = match most_recent(sched, t, false) {
        Err(_) => t.now,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => t.now,
        Ok((_, Some(m), _)) => m,
    };
    let Some(next) = sched.next(base) else {
        return Duration::from_secs(3600);
    };
    let until = next.duration_since(t.now) + SignedDuration::from_millis(100);
    Duration::try_from(until).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn utc(spec: &str) -> Schedule {
        Schedule::parse(spec, TimeZone::UTC).expect("schedule")
    }

    #[test]
    fn next_times_table() {
        // (schedule, after, next)
        let cases = [
            ("* * * * *", "2024-03-10T10:00:30Z", "2024-03-10T10:01:00Z"),
            ("* * * * *", "2024-03-10T10:00:00Z", "2024-03-10T10:01:00Z"),
            (
                "*/15 * * * *",
                "2024-03-10T10:01:00Z",
                "2024-03-10T10:15:00Z",
            ),
            (
                "5/20 * * * *",
                "2024-03-10T10:06:00Z",
                "2024-03-10T10:25:00Z",
            ),
            (
                "0 9 * * 1-5",
                "2024-03-08T10:00:00Z",
                "2024-03-11T09:00:00Z",
            ),
            (
                "0 9 * * MON-FRI",
                "2024-03-08T10:00:00Z",
                "2024-03-11T09:00:00Z",
            ),
            (
                "0 0 1 jan *",
                "2024-03-08T10:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "30 6-16/4 * * *",
                "2024-03-08T07:00:00Z",
                "2024-03-08T10:30:00Z",
            ),
            ("0 0 13 * 5", "2024-09-01T00:00:00Z", "2024-09-06T00:00:00Z"),
            ("0 0 13 * ?", "2024-09-01T00:00:00Z", "2024-09-13T00:00:00Z"),
            (
                "0 0 */1 * 5",
                "2024-09-01T00:00:00Z",
                "2024-09-06T00:00:00Z",
            ),
            ("@hourly", "2024-03-10T10:00:30Z", "2024-03-10T11:00:00Z"),
            ("@daily", "2024-03-10T10:00:30Z", "2024-03-11T00:00:00Z"),
            ("@midnight", "2024-03-10T10:00:30Z", "2024-03-11T00:00:00Z"),
            ("@weekly", "2024-03-10T10:00:30Z", "2024-03-17T00:00:00Z"),
            ("@monthly", "2024-03-10T10:00:30Z", "2024-04-01T00:00:00Z"),
            ("@yearly", "2024-03-10T10:00:30Z", "2025-01-01T00:00:00Z"),
            (
                "@every 90s",
                "2024-03-10T10:00:30.5Z",
                "2024-03-10T10:02:00Z",
            ),
            (
                "@every 1h30m",
                "2024-03-10T10:00:00Z",
                "2024-03-10T11:30:00Z",
            ),
            (
                "TZ=America/New_York 0 9 * * *",
                "2024-03-10T12:00:00Z",
                "2024-03-10T13:00:00Z",
            ),
            (
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                "2024-03-10T12:00:00Z",
                "2024-03-11T00:00:00Z",
            ),
        ];
        for (spec, after, want) in cases {
            assert_eq!(
                utc(spec).next(ts(after)),
                Some(ts(want)),
                "{spec} after {after}"
            );
        }
        let ny = Schedule::parse(
            "0 9 * * *",
            TimeZone::get("America/New_York").expect("zone"),
        )
        .expect("schedule");
        // 9:00 EST is 14:00Z before the DST switch on 2024-03-10, 13:00Z after it.
        assert_eq!(
            ny.next(ts("2024-03-09T00:00:00Z")),
            Some(ts("2024-03-09T14:00:00Z"))
        );
        assert_eq!(
            ny.next(ts("2024-03-10T00:00:00Z")),
            Some(ts("2024-03-10T13:00:00Z"))
        );
        assert_eq!(utc("59 23 31 2 *").next(ts("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn parse_errors() {
        for spec in [
            "",
            "* * * *",
            "* * * * * *",
            "@fortnightly",
            "@every x",
            "TZ=Nowhere/Zone * * * * *",
            "61 * * * *",
        ] {
            assert!(Schedule::parse(spec, TimeZone::UTC).is_err(), "{spec:?}");
        }
    }

    #[test]
    fn go_durations() {
        let cases = [
            ("90s", Some(90.0)),
            ("1h30m", Some(5400.0)),
            ("1.5h", Some(5400.0)),
            ("300ms", Some(0.3)),
            ("0", Some(0.0)),
            ("", None),
            ("5", None),
            ("1x", None),
            ("-1s", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_duration(s).map(|d| d.as_secs_f64()), want, "{s:?}");
        }
    }

    #[test]
    fn most_recent_table() {
        let every_minute = utc("* * * * *");
        let t = |created: &str, last: Option<&str>, deadline: Option<i64>, now: &str| Times {
            created: ts(created),
            last_schedule: last.map(ts),
            starting_deadline_seconds: deadline,
            now: ts(now),
        };
        // (times, include deadline, most recent, missed)
        let cases = [
            (
                t("2024-01-01T10:00:10Z", None, None, "2024-01-01T10:00:50Z"),
                true,
                None,
                Missed::None,
            ),
            (
                t("2024-01-01T10:00:10Z", None, None, "2024-01-01T10:01:05Z"),
                true,
                Some("2024-01-01T10:01:00Z"),
                Missed::None,
            ),
            (
                t("2024-01-01T10:00:10Z", None, None, "2024-01-01T10:05:05Z"),
                true,
                Some("2024-01-01T10:05:00Z"),
                Missed::Few,
            ),
            (
                t(
                    "2024-01-01T10:00:10Z",
                    Some("2024-01-01T10:04:00Z"),
                    None,
                    "2024-01-01T10:05:05Z",
                ),
                true,
                Some("2024-01-01T10:05:00Z"),
                Missed::None,
            ),
            (
                t("2024-01-01T10:00:10Z", None, None, "2024-01-01T13:00:05Z"),
                true,
                Some("2024-01-01T13:00:00Z"),
                Missed::Many,
            ),
            (
                t(
                    "2024-01-01T10:00:10Z",
                    None,
                    Some(30),
                    "2024-01-01T13:00:05Z",
                ),
                true,
                Some("2024-01-01T13:00:00Z"),
                Missed::None,
            ),
            (
                t(
                    "2024-01-01T10:00:10Z",
                    None,
                    Some(3),
                    "2024-01-01T13:00:05Z",
                ),
                true,
                None,
                Missed::None,
            ),
        ];
        for (times, include, want, missed) in cases {
            let (_, got, m) = most_recent(&every_minute, times, include).expect("schedule");
            assert_eq!(got, want.map(ts), "{times:?}");
            assert_eq!(m, missed, "{times:?}");
        }
        assert_eq!(
            most_recent(
                &utc("59 23 31 2 *"),
                t("2024-01-01T00:00:00Z", None, None, "2024-06-01T00:00:00Z"),
                true
            ),
            Err(ScheduleError::Degenerate)
        );
        // Irregular schedules still find the right time.
        let irregular = utc("30 6-16/4 * * 1-5");
        let (_, got, _) = most_recent(
            &irregular,
            t("2024-03-04T00:00:00Z", None, None, "2024-03-08T12:00:00Z"),
            false,
        )
        .expect("schedule");
        assert_eq!(got, Some(ts("2024-03-08T10:30:00Z")));
    }

    #[test]
    fn next_delay_table() {
        let s = utc("*/5 * * * *");
        let times = Times {
            created: ts("2024-01-01T10:01:00Z"),
            last_schedule: None,
            starting_deadline_seconds: None,
            now: ts("2024-01-01T10:02:00Z"),
        };
        assert_eq!(next_delay(&s, times), Duration::from_millis(180_100));
        let later = Times {
            now: ts("2024-01-01T10:12:00Z"),
            ..times
        };
        assert_eq!(next_delay(&s, later), Duration::from_millis(180_100));
    }
}
