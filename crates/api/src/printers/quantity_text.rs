//! Canonical text of a resource quantity, as upstream's `resource.Quantity.String()` prints
//! it in PV/PVC capacities and quota usage (`1536Mi`, `1500m`, `2k`, `1e3`).
//!
//! Kept private to the printers: it only needs parse-then-print, and the exact rounding and
//! suffix rules of upstream's canonical form, not quantity arithmetic.

use serde_json::Value;

/// How the quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// A parsed quantity: `mantissa × 10^exp10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    mantissa: i128,
    exp10: i32,
    format: Format,
}

fn parse(text: &str) -> Option<Parsed> {
    let text = text.trim();
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, rest) = rest.split_at(int_len);
    let (frac_part, suffix) = match rest.strip_prefix('.') {
        Some(after) => {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            after.split_at(n)
        }
        None => ("", rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut mantissa: i128 = 0;
    for d in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(d - b'0'))?;
    }
    let mut exp10 = -i32::try_from(frac_part.len()).ok()?;
    let format = match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => {
            exp10 += match suffix {
                "n" => -9,
                "u" => -6,
                "m" => -3,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                "E" => 18,
                _ => 0,
            };
            Format::DecimalSi
        }
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let power = match suffix {
                "Ki" => 1,
                "Mi" => 2,
                "Gi" => 3,
                "Ti" => 4,
                "Pi" => 5,
                _ => 6,
            };
            mantissa = mantissa.checked_mul(1024_i128.checked_pow(power)?)?;
            Format::BinarySi
        }
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            exp10 = exp10.checked_add(exp.parse::<i32>().ok()?)?;
            Format::DecimalExponent
        }
    };
    if negative {
        mantissa = -mantissa;
    }
    Some(Parsed {
        mantissa,
        exp10,
        format,
    })
}

/// Upstream keeps at most nano precision and rounds any finer value away from zero.
fn round_to_nano(p: &mut Parsed) -> Option<()> {
    if p.exp10 >= -9 {
        return Some(());
    }
    let drop = u32::try_from(-9 - p.exp10).ok()?;
    let Some(div) = 10_i128.checked_pow(drop) else {
        // Far below a nano: anything non-zero rounds to ±1n.
        p.mantissa = p.mantissa.signum();
        p.exp10 = -9;
        return Some(());
    };
    let (q, r) = (p.mantissa / div, p.mantissa % div);
    p.mantissa = q + r.signum();
    p.exp10 = -9;
    Some(())
}

/// Canonical decimal form: strip trailing zeros, then make the exponent a multiple of 3.
fn decimal(mut m: i128, mut e: i32, format: Format) -> Option<String> {
    while m != 0 && m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    let shift = e.rem_euclid(3);
    m = m.checked_mul(10_i128.pow(shift.unsigned_abs()))?;
    e -= shift;
    let suffix = match format {
        Format::DecimalExponent if e == 0 => String::new(),
        Format::DecimalExponent => format!("e{e}"),
        // Upstream prints no suffix at all for exponents it has no SI name for.
        _ => match e {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        }
        .to_string(),
    };
    Some(format!("{m}{suffix}"))
}

fn canonical(text: &str) -> Option<String> {
    let mut p = parse(text)?;
    round_to_nano(&mut p)?;
    if p.mantissa == 0 {
        return Some("0".to_string());
    }
    let mut format = p.format;
    if format == Format::BinarySi {
        // Integer value, if it is one.
        let integer = if p.exp10 >= 0 {
            p.mantissa
                .checked_mul(10_i128.checked_pow(p.exp10.unsigned_abs())?)
        } else {
            let div = 10_i128.checked_pow(p.exp10.unsigned_abs())?;
            (p.mantissa % div == 0).then_some(p.mantissa / div)
        };
        match integer {
            Some(n) if n <= -1024 || n >= 1024 => {
                let mut n = n;
                let mut power = 0;
                while n % 1024 == 0 {
                    n /= 1024;
                    power += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                    .get(power)
                    .copied()
                    .unwrap_or("");
                return Some(format!("{n}{suffix}"));
            }
            _ => format = Format::DecimalSi,
        }
    }
    decimal(p.mantissa, p.exp10, format)
}

/// `Quantity.String()` of a JSON quantity (a string, or a bare number); `"0"` when the
/// field is missing. Unparsable text is shown as given.
pub(super) fn quantity_string(v: &Value) -> String {
    let text = match v {
        Value::Null => return "0".to_string(),
        Value::String(x) => x.clone(),
        Value::Number(n) => n.to_string(),
        other => return other.to_string(),
    };
    canonical(&text).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_forms() {
        let cases: &[(&str, &str)] = &[
            ("0", "0"),
            ("0Gi", "0"),
            ("10Gi", "10Gi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("2048Ki", "2Mi"),
            ("100Ki", "100Ki"),
            ("0.5Ki", "512"),
            ("1Ki", "1Ki"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1200000", "1200k"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("1000m", "1"),
            ("500m", "500m"),
            ("2M", "2M"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("1E6", "1e6"),
            ("100n", "100n"),
            ("0.0000000001", "1n"),
            ("-1.5", "-1500m"),
            ("5", "5"),
            ("12e-2", "120e-3"),
        ];
        for (input, want) in cases {
            assert_eq!(quantity_string(&json!(input)), *want, "{input}");
        }
        assert_eq!(quantity_string(&Value::Null), "0");
        assert_eq!(quantity_string(&json!(3)), "3");
        assert_eq!(quantity_string(&json!("abc")), "abc");
    }
}
