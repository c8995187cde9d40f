//! Helpers shared by the printers: lenient JSON accessors, timestamps, upstream's
//! `HumanDuration`, and the text formats upstream uses for labels, label selectors,
//! access modes and container lists.
//!
//! The accessors never fail: a missing or mistyped field reads as the zero value, which
//! is what upstream's printers see for an unset field of a typed object.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

/// The string at `v`, or `""`.
pub(super) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The string at `v`, or `default` when missing or empty (an unconditional upstream default).
pub(super) fn s_or<'a>(v: &'a Value, default: &'a str) -> &'a str {
    match v.as_str() {
        Some(x) if !x.is_empty() => x,
        _ => default,
    }
}

/// The integer at `v`, or 0.
pub(super) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The array at `v`, or an empty slice.
pub(super) fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The object at `v`, if any.
pub(super) fn obj(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

/// Number of entries of the object at `v` (0 when missing).
pub(super) fn obj_len(v: &Value) -> usize {
    v.as_object().map_or(0, Map::len)
}

/// `metadata.name`.
pub(super) fn name(o: &Value) -> &str {
    s(&o["metadata"]["name"])
}

/// Whether `metadata.deletionTimestamp` is set.
pub(super) fn deleting(o: &Value) -> bool {
    !o["metadata"]["deletionTimestamp"].is_null()
}

/// A string cell.
pub(super) fn cell(x: impl Into<String>) -> Value {
    Value::String(x.into())
}

/// Parses a `metav1.Time`/`MicroTime`; `None` for missing, empty, unparsable or the zero time
/// (Go's `IsZero`).
pub(super) fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    let text = v.as_str()?;
    let t = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (t != zero_time()).then_some(t)
}

/// Go's zero `time.Time`, 0001-01-01T00:00:00Z.
pub(super) fn zero_time() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Upstream's `translateTimestampSince`: `<unknown>` for an unset time, else the human
/// duration since it.
pub(super) fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        None => "<unknown>".to_string(),
        Some(t) => human_duration(now.signed_duration_since(t)),
    }
}

/// The AGE cell: time since `metadata.creationTimestamp`.
pub(super) fn age(o: &Value, now: DateTime<Utc>) -> Value {
    cell(since(timestamp(&o["metadata"]["creationTimestamp"]), now))
}

/// Go's `time.Duration` is int64 nanoseconds and `Sub` saturates; mirror that.
fn go_nanos(d: Duration) -> i128 {
    let nanos = i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos());
    nanos.clamp(i128::from(i64::MIN), i128::from(i64::MAX))
}

/// Upstream `duration.HumanDuration`: a succinct duration with 2-3 significant figures,
/// e.g. `5s`, `2m3s`, `6h15m`, `3d4h`, `20d`, `2y30d`; `<invalid>` for clearly negative
/// durations and `0s` for tiny clock skew.
pub fn human_duration(d: Duration) -> String {
    let nanos = go_nanos(d);
    let seconds = nanos / 1_000_000_000; // truncates toward zero, like Go's int(d.Seconds())
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// Upstream `labels.FormatLabels`: sorted `k=v` pairs joined by `,`, or `<none>`.
pub(super) fn format_labels(v: &Value) -> String {
    let mut pairs: Vec<(&String, &str)> = obj(v)
        .map(|m| m.iter().map(|(k, v)| (k, s(v))).collect())
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a label selector cannot be turned into a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BadSelector;

/// Upstream `LabelSelectorAsSelector(sel).String()`: requirements sorted by key,
/// `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by `,`. A missing selector and an
/// empty one both print as `""`.
///
/// Written by hand (rather than reusing the selector parser) because this direction —
/// structured selector to canonical text — is all the printers need.
pub(super) fn selector_string(sel: &Value) -> Result<String, BadSelector> {
    if sel.is_null() {
        return Ok(String::new());
    }
    let sel = obj(sel).ok_or(BadSelector)?;
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            let v = v.as_str().ok_or(BadSelector)?;
            check_key(k)?;
            check_value(v)?;
            reqs.push((k.clone(), format!("{k}={v}")));
        }
    }
    for expr in arr(sel.get("matchExpressions").unwrap_or(&Value::Null)) {
        let key = s(&expr["key"]);
        check_key(key)?;
        let mut values: Vec<&str> = Vec::new();
        for v in arr(&expr["values"]) {
            let v = v.as_str().ok_or(BadSelector)?;
            check_value(v)?;
            values.push(v);
        }
        let text = match s(&expr["operator"]) {
            op @ ("In" | "NotIn") => {
                if values.is_empty() {
                    return Err(BadSelector);
                }
                values.sort_unstable();
                let word = if op == "In" { "in" } else { "notin" };
                format!("{key} {word} ({})", values.join(","))
            }
            op @ ("Exists" | "DoesNotExist") => {
                if !values.is_empty() {
                    return Err(BadSelector);
                }
                if op == "Exists" {
                    key.to_string()
                } else {
                    format!("!{key}")
                }
            }
            _ => return Err(BadSelector),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(","))
}

/// Upstream `metav1.FormatLabelSelector`: like [`selector_string`] but `<none>` when empty
/// and `<error>` when invalid.
pub(super) fn format_label_selector(sel: &Value) -> String {
    match selector_string(sel) {
        Ok(text) if text.is_empty() => "<none>".to_string(),
        Ok(text) => text,
        Err(BadSelector) => "<error>".to_string(),
    }
}

/// A label name segment: 1-63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn is_name_segment(x: &str) -> bool {
    let b = x.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain (label key prefix).
fn is_dns_subdomain(x: &str) -> bool {
    x.len() <= 253
        && x.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn check_key(key: &str) -> Result<(), BadSelector> {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_segment(name),
        None => is_name_segment(key),
    };
    if ok { Ok(()) } else { Err(BadSelector) }
}

fn check_value(v: &str) -> Result<(), BadSelector> {
    if v.is_empty() || is_name_segment(v) {
        Ok(())
    } else {
        Err(BadSelector)
    }
}

/// Upstream `GetAccessModesAsString`: `RWO,ROX,RWX,RWOP` in that fixed order.
pub(super) fn access_modes(modes: &Value) -> String {
    let has = |m: &str| arr(modes).iter().any(|x| s(x) == m);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// Upstream `layoutContainerCells`: container names and images, each joined by `,`.
pub(super) fn container_cells(containers: &Value) -> (Value, Value) {
    let list = arr(containers);
    let names: Vec<&str> = list.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = list.iter().map(|c| s(&c["image"])).collect();
    (cell(names.join(",")), cell(images.join(",")))
}

/// Go's `net.JoinHostPort`.
pub(super) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Upstream `listWithMoreString`.
pub(super) fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - max)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

/// Text of a scalar or composite value the way Go's `fmt.Fprint` (scalars) and
/// `json.Marshal` (maps and slices) render it, as upstream's JSONPath printer does.
pub(super) fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(x) => x.clone(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => go_float_g(n.as_f64().unwrap_or(0.0)),
        },
        Value::Array(_) | Value::Object(_) => {
            let mut out = String::new();
            go_json(v, &mut out);
            out
        }
    }
}

/// Decimal digits and decimal-point position of the shortest round-trip representation
/// of a finite, non-zero `f`: `f = 0.d1d2... × 10^dp`.
fn shortest_digits(f: f64) -> (String, i32) {
    let sci = format!("{:e}", f.abs()); // e.g. "1.2345e6"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    (digits, exp + 1)
}

/// Formats like Go's `strconv.FormatFloat(f, 'e', -1, 64)`.
fn go_float_e(f: f64) -> String {
    let (digits, dp) = shortest_digits(f);
    let sign = if f < 0.0 { "-" } else { "" };
    let exp = dp - 1;
    let (first, rest) = digits.split_at(1);
    let frac = if rest.is_empty() {
        String::new()
    } else {
        format!(".{rest}")
    };
    let esign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
}

/// Formats like Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
fn go_float_f(f: f64) -> String {
    let (digits, dp) = shortest_digits(f);
    let sign = if f < 0.0 { "-" } else { "" };
    let nd = digits.len() as i32;
    let body = if dp <= 0 {
        format!("0.{}{}", "0".repeat((-dp) as usize), digits)
    } else if dp >= nd {
        format!("{}{}", digits, "0".repeat((dp - nd) as usize))
    } else {
        let (int_part, frac) = digits.split_at(dp as usize);
        format!("{int_part}.{frac}")
    };
    format!("{sign}{body}")
}

/// Go's `%v` for a float64 (`'g'` with the shortest precision).
pub(super) fn go_float_g(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let (_, dp) = shortest_digits(f);
    let exp = dp - 1;
    if !(-4..6).contains(&exp) {
        go_float_e(f)
    } else {
        go_float_f(f)
    }
}

/// Go's `encoding/json` text for a float64.
fn go_json_float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return "0".to_string();
    }
    let abs = f.abs();
    if (1e-6..1e21).contains(&abs) {
        return go_float_f(f);
    }
    let text = go_float_e(f);
    // Go trims the exponent's leading zero: e-07 -> e-7, e+07 stays two digits only when needed.
    match text.rsplit_once('e') {
        Some((m, e)) if e.len() == 3 && e.as_bytes()[1] == b'0' && e.starts_with('-') => {
            format!("{m}e-{}", &e[2..])
        }
        _ => text,
    }
}

/// Go's `json.Marshal` of a decoded JSON value: object keys sorted, `<`, `>`, `&`, U+2028
/// and U+2029 escaped as `\uXXXX`.
pub(super) fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None => out.push_str(&go_json_float(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(x) => go_json_string(x, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, out);
                out.push(':');
                go_json(&map[k.as_str()], out);
            }
            out.push('}');
        }
    }
}

fn go_json_string(x: &str, out: &mut String) {
    out.push('"');
    for c in x.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn human_duration_table() {
        let cases: &[(i64, &str)] = &[
            (-5, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (123, "2m3s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (6 * 3600 + 15 * 60, "6h15m"),
            (8 * 3600 + 59 * 60, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (7 * 86400 + 23 * 3600, "7d23h"),
            (8 * 86400, "8d"),
            (20 * 86400, "20d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (760 * 86400, "2y30d"),
            (8 * 365 * 86400, "8y"),
            (100 * 365 * 86400, "100y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::seconds(*secs)), *want, "{secs}s");
        }
        // Sub-second skew: -1.5s truncates to -1s → "0s"; Go saturates at ~292 years.
        assert_eq!(human_duration(Duration::milliseconds(-1500)), "0s");
        assert_eq!(human_duration(Duration::days(365 * 1000)), "292y");
    }

    #[test]
    fn label_selector_strings() {
        let cases: Vec<(Value, Result<&str, BadSelector>)> = vec![
            (Value::Null, Ok("")),
            (json!({}), Ok("")),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), Ok("a=1,b=2")),
            (
                json!({"matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["web", "api"]},
                    {"key": "env", "operator": "NotIn", "values": ["prod"]},
                    {"key": "x", "operator": "Exists"},
                    {"key": "gone", "operator": "DoesNotExist"}
                ], "matchLabels": {"app": "web"}}),
                Ok("app=web,env notin (prod),!gone,tier in (api,web),x"),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}),
                Err(BadSelector),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                Err(BadSelector),
            ),
            (json!({"matchLabels": {"bad key": "x"}}), Err(BadSelector)),
            (
                json!({"matchLabels": {"example.com/app": "v"}}),
                Ok("example.com/app=v"),
            ),
        ];
        for (sel, want) in cases {
            assert_eq!(selector_string(&sel), want.map(str::to_string), "{sel}");
        }
        assert_eq!(format_label_selector(&json!({})), "<none>");
        assert_eq!(format_label_selector(&Value::Null), "<none>");
        assert_eq!(
            format_label_selector(&json!({"matchExpressions": [{"key": "a", "operator": "?"}]})),
            "<error>"
        );
    }

    #[test]
    fn labels_and_access_modes() {
        assert_eq!(format_labels(&json!({"z": "1", "a": "2"})), "a=2,z=1");
        assert_eq!(format_labels(&json!({})), "<none>");
        assert_eq!(format_labels(&Value::Null), "<none>");
        assert_eq!(
            access_modes(&json!(["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"])),
            "RWO,RWX"
        );
        assert_eq!(
            access_modes(&json!(["ReadWriteOncePod", "ReadOnlyMany"])),
            "ROX,RWOP"
        );
        assert_eq!(access_modes(&Value::Null), "");
    }

    #[test]
    fn go_formatting() {
        let cases: &[(Value, &str)] = &[
            (json!("text"), "text"),
            (json!(42), "42"),
            (json!(-7), "-7"),
            (json!(1.5), "1.5"),
            (json!(1e6), "1e+06"),
            (json!(123456.0), "123456"),
            (json!(1234567.5), "1.2345675e+06"),
            (json!(0.0001), "0.0001"),
            (json!(0.00001), "1e-05"),
            (json!(true), "true"),
            (Value::Null, "<no value>"),
            (
                json!({"b": 1, "a": "<x>"}),
                r#"{"a":"\u003cx\u003e","b":1}"#,
            ),
            (json!([1, 2.5, "s", null]), r#"[1,2.5,"s",null]"#),
            (
                json!([1e-7, 1e21, 3.0e20]),
                r#"[1e-7,1e+21,300000000000000000000]"#,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(go_print(v), *want, "{v}");
        }
    }

    #[test]
    fn timestamps() {
        assert!(timestamp(&json!("0001-01-01T00:00:00Z")).is_none());
        assert!(timestamp(&json!("")).is_none());
        assert!(timestamp(&json!("garbage")).is_none());
        assert!(timestamp(&json!("2024-05-01T11:00:00.123456Z")).is_some());
        let now =
            DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z").map(|t| t.with_timezone(&Utc));
        let now = now.unwrap_or_default();
        assert_eq!(since(timestamp(&json!("2024-05-01T11:00:00Z")), now), "60m");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
    }
}
