//! Resource quantities (`100m`, `1Gi`, `1e3`, `0.5`): parsing, the canonical string
//! form upstream serialises, comparison and arithmetic.
//!
//! Upstream keeps quantities as arbitrary-precision decimals rounded up to nano units
//! and prints them in a canonical form that depends on the suffix family the user wrote
//! (binary `Ki`..`Ei`, decimal `n`..`E`, or an `e` exponent). This module reproduces
//! that, including upstream's rule of keeping the user's own spelling when it is
//! already canonical. Values are held as an `i128` mantissa and a power-of-ten
//! exponent, which covers every quantity a cluster handles; inputs needing more than 38
//! significant digits above the nano position are rejected as unparseable (upstream
//! would accept them). No crate offers upstream's exact canonical form, hence the hand
//! implementation.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Parse errors, with upstream's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    FormatWrong,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// The suffix family a quantity is printed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `12e6`
    DecimalExponent,
    /// `12Mi` (powers of 1024)
    BinarySI,
    /// `12M` (powers of 1000)
    DecimalSI,
}

/// `m × 10^e`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dec {
    m: i128,
    e: i64,
}

const MAX_DIGITS: usize = 38;

fn pow10(k: i64) -> Option<i128> {
    10i128.checked_pow(u32::try_from(k).ok()?)
}

fn pow10_u(k: i64) -> Option<u128> {
    10u128.checked_pow(u32::try_from(k).ok()?)
}

fn digit_count(mut v: u128) -> i64 {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

impl Dec {
    const ZERO: Dec = Dec { m: 0, e: 0 };

    /// Moves trailing zeros of the mantissa into the exponent.
    fn normalized(self) -> Dec {
        if self.m == 0 {
            return Dec::ZERO;
        }
        let (mut m, mut e) = (self.m, self.e);
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        Dec { m, e }
    }

    fn signum(self) -> i32 {
        self.m.signum() as i32
    }

    /// Rounds the magnitude up so the exponent is at least `exp`; reports exactness.
    /// `sticky` says digits below the mantissa were already dropped and were non-zero.
    fn round_up_to(self, exp: i64, sticky: bool) -> (Dec, bool) {
        if self.e >= exp {
            if sticky {
                // Dropped digits lie below 10^e, so the next unit up at 10^e is the ceiling.
                let bump = Dec {
                    m: self.m + self.m.signum().max(1),
                    e: self.e,
                };
                return (bump, false);
            }
            return (self, true);
        }
        let mag = self.m.unsigned_abs();
        let (mut q, rem) = match pow10_u(exp - self.e) {
            Some(p) => (mag / p, mag % p),
            None => (0, mag),
        };
        let inexact = rem != 0 || sticky;
        if inexact {
            q += 1;
        }
        let m = if self.m < 0 { -(q as i128) } else { q as i128 };
        (Dec { m, e: exp }, !inexact)
    }

    fn cmp_value(self, other: Dec) -> Ordering {
        let (a, b) = (self.normalized(), other.normalized());
        match a.signum().cmp(&b.signum()) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        if a.m == 0 {
            return Ordering::Equal;
        }
        let mag = cmp_magnitude(a, b);
        if a.m < 0 { mag.reverse() } else { mag }
    }

    fn checked_add(self, other: Dec) -> Option<Dec> {
        if self.m == 0 {
            return Some(other);
        }
        if other.m == 0 {
            return Some(self);
        }
        let e = self.e.min(other.e);
        let a = self.m.checked_mul(pow10(self.e - e)?)?;
        let b = other.m.checked_mul(pow10(other.e - e)?)?;
        Some(
            Dec {
                m: a.checked_add(b)?,
                e,
            }
            .normalized(),
        )
    }
}

fn cmp_magnitude(a: Dec, b: Dec) -> Ordering {
    let (ma, mb) = (a.m.unsigned_abs(), b.m.unsigned_abs());
    let oa = digit_count(ma) + a.e;
    let ob = digit_count(mb) + b.e;
    if oa != ob {
        return oa.cmp(&ob);
    }
    // Same order of magnitude: scale the one with the larger exponent down to the other.
    if a.e >= b.e {
        match pow10_u(a.e - b.e).and_then(|p| ma.checked_mul(p)) {
            Some(scaled) => scaled.cmp(&mb),
            None => Ordering::Greater,
        }
    } else {
        match pow10_u(b.e - a.e).and_then(|p| mb.checked_mul(p)) {
            Some(scaled) => ma.cmp(&scaled),
            None => Ordering::Less,
        }
    }
}

/// A resource quantity.
#[derive(Clone, Debug)]
pub struct Quantity {
    value: Dec,
    format: Format,
    /// The user's spelling, kept when upstream would keep it (it is then canonical).
    text: Option<String>,
}

impl Default for Quantity {
    fn default() -> Self {
        Quantity::zero()
    }
}

struct Parts<'a> {
    positive: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

/// Upstream's hand-written scanner for `[+-]digits[.digits]suffix`.
fn split_quantity(s: &str) -> Result<Parts<'_>, QuantityError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut positive = true;
    let mut pos = 0;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok(Parts {
            positive,
            num: "0",
            denom: "",
            suffix: "",
        });
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = if pos == num_start {
        "0"
    } else {
        &s[num_start..pos]
    };
    if pos >= end {
        return Ok(Parts {
            positive,
            num,
            denom: "",
            suffix: "",
        });
    }
    let mut denom = "";
    if b[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[denom_start..pos];
        if pos >= end {
            return Ok(Parts {
                positive,
                num,
                denom,
                suffix: "",
            });
        }
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QuantityError::FormatWrong);
    }
    Ok(Parts {
        positive,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

/// Maps a suffix to (base, exponent, format).
fn interpret_suffix(suffix: &str) -> Option<(u32, i64, Format)> {
    Some(match suffix {
        "" => (10, 0, Format::DecimalSI),
        "n" => (10, -9, Format::DecimalSI),
        "u" => (10, -6, Format::DecimalSI),
        "m" => (10, -3, Format::DecimalSI),
        "k" => (10, 3, Format::DecimalSI),
        "M" => (10, 6, Format::DecimalSI),
        "G" => (10, 9, Format::DecimalSI),
        "T" => (10, 12, Format::DecimalSI),
        "P" => (10, 15, Format::DecimalSI),
        "E" => (10, 18, Format::DecimalSI),
        "Ki" => (2, 10, Format::BinarySI),
        "Mi" => (2, 20, Format::BinarySI),
        "Gi" => (2, 30, Format::BinarySI),
        "Ti" => (2, 40, Format::BinarySI),
        "Pi" => (2, 50, Format::BinarySI),
        "Ei" => (2, 60, Format::BinarySI),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let exp: i64 = s[1..].parse().ok()?;
            // Upstream narrows the exponent to 32 bits.
            (
                10,
                i64::from(i32::try_from(exp).ok()?),
                Format::DecimalExponent,
            )
        }
        _ => return None,
    })
}

const NANO: i64 = -9;

impl Quantity {
    /// Zero (`0`).
    pub fn zero() -> Self {
        Quantity {
            value: Dec::ZERO,
            format: Format::DecimalSI,
            text: None,
        }
    }

    /// An integer quantity, e.g. `from_i64(2, Format::BinarySI)`.
    pub fn from_i64(value: i64, format: Format) -> Self {
        Quantity {
            value: Dec {
                m: i128::from(value),
                e: 0,
            },
            format,
            text: None,
        }
    }

    /// A quantity in thousandths, e.g. `from_milli(250, Format::DecimalSI)` is `250m`.
    pub fn from_milli(value: i64, format: Format) -> Self {
        Quantity {
            value: Dec {
                m: i128::from(value),
                e: -3,
            },
            format,
            text: None,
        }
    }

    /// Parses a quantity string.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        if s == "0" {
            return Ok(Quantity {
                value: Dec::ZERO,
                format: Format::DecimalSI,
                text: Some("0".into()),
            });
        }
        let parts = split_quantity(s)?;
        let (base, exponent, format) =
            interpret_suffix(parts.suffix).ok_or(QuantityError::Suffix)?;
        if let Some(q) = fast_path(s, &parts, base, exponent, format) {
            return Ok(q);
        }
        slow_path(&parts, base, exponent, format)
    }

    /// Parses a JSON quantity: a string, or a number as some clients send.
    pub fn from_json(value: &Value) -> Result<Self, QuantityError> {
        match value {
            Value::String(s) => Quantity::parse(s.trim()),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => Err(QuantityError::FormatWrong),
        }
    }

    /// The suffix family used when printing.
    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.value.m == 0
    }

    /// -1, 0 or 1.
    pub fn signum(&self) -> i32 {
        self.value.signum()
    }

    /// The canonical string form (what upstream serialises).
    pub fn canonical(&self) -> String {
        if let Some(text) = &self.text {
            return text.clone();
        }
        canonical_string(self.value.normalized(), self.format)
    }

    /// The value in `10^scale` units, rounded away from zero and saturated to `i64`
    /// (upstream's `ScaledValue`; `value()` is scale 0, `milli_value()` scale -3).
    pub fn scaled_value(&self, scale: i32) -> i64 {
        let v = self.value.normalized();
        let shifted = Dec {
            m: v.m,
            e: v.e - i64::from(scale),
        };
        let (rounded, _) = shifted.round_up_to(0, false);
        let m = pow10(rounded.e.max(0)).and_then(|p| rounded.m.checked_mul(p));
        match m {
            Some(m) => m.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            None if rounded.m < 0 => i64::MIN,
            None => i64::MAX,
        }
    }

    /// Whole units, rounded up.
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// Thousandths, rounded up.
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(-3)
    }

    /// An approximate float value.
    pub fn as_f64(&self) -> f64 {
        let v = self.value.normalized();
        v.m as f64 * 10f64.powi(v.e.clamp(-400, 400) as i32)
    }

    /// Rounds up so no digits finer than `10^scale` remain; true when nothing was lost
    /// (upstream's `RoundUp`, used to round resource lists to milli units).
    pub fn round_up(&mut self, scale: i32) -> bool {
        let v = self.value.normalized();
        let (rounded, exact) = v.round_up_to(i64::from(scale), false);
        if !exact {
            self.value = rounded.normalized();
            self.text = None;
        }
        exact
    }

    /// `self + other`, or `None` on overflow. The result keeps `self`'s format unless
    /// `self` is zero, as upstream's `Add`.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        Some(Quantity {
            value: self.value.checked_add(other.value)?,
            format,
            text: None,
        })
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        let neg = Dec {
            m: other.value.m.checked_neg()?,
            e: other.value.e,
        };
        Some(Quantity {
            value: self.value.checked_add(neg)?,
            format,
            text: None,
        })
    }

    /// The negated quantity.
    pub fn neg(&self) -> Quantity {
        Quantity {
            value: Dec {
                m: self.value.m.saturating_neg(),
                e: self.value.e,
            },
            format: self.format,
            text: None,
        }
    }

    /// Converts to the `k8s-openapi` string wrapper (canonical form).
    pub fn to_k8s(&self) -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
        k8s_openapi::apimachinery::pkg::api::resource::Quantity(self.canonical())
    }
}

/// Upstream's int64 fast path: used when the value fits, and decides whether the
/// user's spelling is kept as the serialised form.
fn fast_path(s: &str, p: &Parts<'_>, base: u32, exponent: i64, format: Format) -> Option<Quantity> {
    let digits = (p.num.len() + p.denom.len()) as i64;
    let (mut scale, precision, mantissa) = if base == 10 {
        (exponent, 18 - digits, 1i64)
    } else if exponent >= 0 && p.denom.is_empty() {
        let precision = 15 - p.num.len() as i64 - (exponent as f32 * 3.0 / 10.0) as i64 - 1;
        (
            0,
            precision,
            1i64.checked_shl(u32::try_from(exponent).ok()?)?,
        )
    } else {
        (0, -1, 1)
    };
    if precision < 0 {
        return None;
    }
    scale -= p.denom.len() as i64;
    if scale < NANO {
        return None;
    }
    let shifted = format!("{}{}", p.num, p.denom);
    let value: i64 = shifted.parse().ok()?;
    let mut result = value.checked_mul(mantissa)?;
    if !p.positive {
        result = -result;
    }
    let keep = if format == Format::BinarySI {
        exponent % 10 == 0 && value & 0x07 != 0
    } else {
        scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
    };
    Some(Quantity {
        value: Dec {
            m: i128::from(result),
            e: scale,
        },
        format,
        text: keep.then(|| s.to_string()),
    })
}

/// Upstream's arbitrary-precision path.
fn slow_path(
    p: &Parts<'_>,
    base: u32,
    exponent: i64,
    mut format: Format,
) -> Result<Quantity, QuantityError> {
    let all: String = format!("{}{}", p.num, p.denom);
    let trimmed = all.trim_start_matches('0');
    let mut digits = trimmed.trim_end_matches('0');
    let mut e = -(p.denom.len() as i64) + (trimmed.len() - digits.len()) as i64;
    let mut sticky = false;
    if digits.len() > MAX_DIGITS {
        if base != 10 {
            return Err(QuantityError::Numeric);
        }
        // Digits below the nano position only matter for rounding up.
        let final_e = e + exponent;
        let drop = (NANO - final_e).max(0) as usize;
        if digits.len() - drop.min(digits.len()) > MAX_DIGITS {
            return Err(QuantityError::Numeric);
        }
        let keep = digits.len().saturating_sub(drop);
        sticky = digits[keep..].bytes().any(|b| b != b'0');
        digits = &digits[..keep];
        e += drop as i64;
    }
    let mut m: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| QuantityError::Numeric)?
    };
    if base == 10 {
        e += exponent;
    } else {
        m = m
            .checked_mul(1i128 << exponent)
            .ok_or(QuantityError::Numeric)?;
    }
    let mut value = Dec { m, e };
    if value.m != 0 || sticky {
        value = value.round_up_to(NANO, sticky).0.normalized();
    }
    let max_allowed = Dec {
        m: i128::from(i64::MAX),
        e: 0,
    };
    if format == Format::BinarySI && cmp_magnitude(value, max_allowed) == Ordering::Greater {
        value = max_allowed;
    }
    if format == Format::BinarySI
        && value.m != 0
        && cmp_magnitude(value, Dec { m: 1, e: 0 }) == Ordering::Less
    {
        format = Format::DecimalSI;
    }
    if !p.positive {
        value.m = -value.m;
    }
    Ok(Quantity {
        value,
        format,
        text: None,
    })
}

fn decimal_suffix(exp: i64) -> Option<&'static str> {
    Some(match exp {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => return None,
    })
}

fn canonical_string(v: Dec, format: Format) -> String {
    if v.m == 0 {
        return "0".to_string();
    }
    let mut format = format;
    if format == Format::BinarySI {
        let small = cmp_magnitude(v, Dec { m: 1024, e: 0 }) == Ordering::Less;
        let (int, exact) = v.round_up_to(0, false);
        if small || !exact {
            format = Format::DecimalSI;
        } else {
            let Some(mut mag) =
                pow10_u(int.e.max(0)).and_then(|p| int.m.unsigned_abs().checked_mul(p))
            else {
                return canonical_string(v, Format::DecimalSI);
            };
            let mut times = 0;
            while mag >= 1024 && mag % 1024 == 0 {
                mag /= 1024;
                times += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                .get(times)
                .copied()
                .unwrap_or("");
            let sign = if v.m < 0 { "-" } else { "" };
            return format!("{sign}{mag}{suffix}");
        }
    }
    // Make the exponent a multiple of three by moving digits into the mantissa.
    let (mut m, mut e) = (v.m, v.e);
    while e.rem_euclid(3) != 0 {
        match m.checked_mul(10) {
            Some(next) => {
                m = next;
                e -= 1;
            }
            None => return format!("{m}e{e}"),
        }
    }
    match (format, decimal_suffix(e)) {
        (Format::DecimalExponent, _) | (_, None) => {
            if e == 0 {
                m.to_string()
            } else {
                format!("{m}e{e}")
            }
        }
        (_, Some(suffix)) => format!("{m}{suffix}"),
    }
}

/// Parses and prints a quantity in canonical form.
pub fn canonicalize(s: &str) -> Result<String, QuantityError> {
    Ok(Quantity::parse(s)?.canonical())
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.value.cmp_value(other.value) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.value.cmp_value(other.value)
    }
}

impl TryFrom<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> for Quantity {
    type Error = QuantityError;
    fn try_from(
        q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    ) -> Result<Self, Self::Error> {
        Quantity::parse(q.0.trim())
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical())
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Quantity::from_json(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_match_upstream() {
        let cases = [
            ("0", "0"),
            ("00", "0"),
            ("100m", "100m"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            (".5", "500m"),
            ("1e3", "1e3"),
            ("1E3", "1E3"),
            ("1000e3", "1e6"),
            ("1.5e3", "1500"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("8Ki", "8Ki"),
            ("1536Ki", "1536Ki"),
            ("0.5Gi", "512Mi"),
            ("0.5Ki", "512"),
            ("1.5Ki", "1536"),
            ("12Ki", "12Ki"),
            ("+100m", "+100m"),
            ("-1Ki", "-1Ki"),
            ("-0.5", "-500m"),
            ("1k", "1k"),
            ("1000k", "1M"),
            ("1000", "1k"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("123Mi", "123Mi"),
            ("0.1m", "100u"),
            ("0.0000000001", "1n"),
            ("-0.0000000001", "-1n"),
            ("1n", "1n"),
            ("1.0000000001", "1000000001n"),
            ("12345678901234567890", "12345678901234567890"),
            ("2Ei", "2Ei"),
            ("100Ei", "9223372036854775807"),
            ("1e-3", "1e-3"),
            ("0.001", "1m"),
            (
                "1234567890123456789012345678.5",
                "1234567890123456789012345678500m",
            ),
            ("0.000000000000000000000000000000000000000000001", "1n"),
        ];
        for (input, want) in cases {
            let q = Quantity::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(q.to_string(), want, "{input}");
            // The canonical form re-parses to an equal value.
            assert_eq!(Quantity::parse(want).unwrap(), q, "{input} round trip");
        }
    }

    #[test]
    fn parse_errors() {
        let cases = [
            ("", QuantityError::FormatWrong),
            ("1.2.3", QuantityError::FormatWrong),
            ("abc", QuantityError::FormatWrong),
            ("1 Gi", QuantityError::FormatWrong),
            ("1ki", QuantityError::Suffix),
            ("1e", QuantityError::Suffix),
            ("1Qi", QuantityError::FormatWrong),
            ("1GiB", QuantityError::FormatWrong),
        ];
        for (input, want) in cases {
            assert_eq!(Quantity::parse(input).unwrap_err(), want, "{input}");
        }
        assert_eq!(
            QuantityError::FormatWrong.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn comparison_and_arithmetic() {
        let q = |s: &str| Quantity::parse(s).unwrap();
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("0"));
        assert!(q("1e3") == q("1k"));
        assert_eq!(q("100m").checked_add(&q("900m")).unwrap().to_string(), "1");
        assert_eq!(q("1Gi").checked_add(&q("1Gi")).unwrap().to_string(), "2Gi");
        assert_eq!(
            Quantity::zero().checked_add(&q("1Mi")).unwrap().to_string(),
            "1Mi"
        );
        assert_eq!(q("1").checked_sub(&q("250m")).unwrap().to_string(), "750m");
        assert_eq!(q("1").neg().to_string(), "-1");
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("1500m").milli_value(), 1500);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("-1500m").value(), -2);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("100Ei").value(), i64::MAX);
        assert!((q("250m").as_f64() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn round_up_to_milli() {
        let mut v = Quantity::parse("0.0001").unwrap();
        assert!(!v.round_up(-3));
        assert_eq!(v.to_string(), "1m");
        let mut w = Quantity::parse("100m").unwrap();
        assert!(w.round_up(-3));
        assert_eq!(w.to_string(), "100m");
    }

    #[test]
    fn serde_and_json() {
        let v: Quantity = serde_json::from_value(serde_json::json!("1024Mi")).unwrap();
        assert_eq!(serde_json::to_value(&v).unwrap(), serde_json::json!("1Gi"));
        let n: Quantity = serde_json::from_value(serde_json::json!(0.5)).unwrap();
        assert_eq!(n.to_string(), "500m");
        assert!(serde_json::from_value::<Quantity>(serde_json::json!(true)).is_err());
        assert_eq!(canonicalize("2000m").unwrap(), "2");
        let k = k8s_openapi::apimachinery::pkg::api::resource::Quantity("3Gi".into());
        assert_eq!(Quantity::try_from(&k).unwrap().to_k8s(), k);
    }
}
