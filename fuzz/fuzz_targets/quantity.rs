//! `api::quantity::Quantity`: parsing, canonical printing, comparison, arithmetic and
//! scaling.
//!
//! Input (text, invalid UTF-8 replaced): one quantity per line (at most four). Checked
//! beyond "no panic": the canonical form of a parsed quantity parses back to an equal
//! quantity with the same canonical form, comparison is consistent, and `a + b - b`
//! equals `a` when neither step overflows.
#![no_main]

use std::cmp::Ordering;

use api::quantity::Quantity;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SCALES: &[i32] = &[i32::MIN, -18, -9, -3, 0, 3, 9, 18, i32::MAX];

fn check_one(text: &str) -> Option<Quantity> {
    let _ = Quantity::from_json(&Value::from(text));
    let q = Quantity::parse(text).ok()?;
    let canonical = q.canonical();
    let back = Quantity::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical form {canonical:?} of {text:?} does not parse: {e}"));
    assert_eq!(
        back, q,
        "canonical form {canonical:?} of {text:?} is a different value"
    );
    assert_eq!(
        back.canonical(),
        canonical,
        "canonical form of {text:?} is not stable"
    );
    assert_eq!(q.cmp(&q), Ordering::Equal);
    for scale in SCALES {
        let _ = q.scaled_value(*scale);
        let mut rounded = q.clone();
        let _ = rounded.round_up(*scale);
        let _ = rounded.canonical();
    }
    let _ = (
        q.value(),
        q.milli_value(),
        q.as_f64(),
        q.signum(),
        q.is_zero(),
        q.format(),
    );
    let neg = q.neg();
    let _ = neg.canonical();
    let _ = q.to_k8s();
    let _ = serde_json::to_string(&q);
    Some(q)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed: Vec<Quantity> = text.split('\n').take(4).filter_map(check_one).collect();
    for a in &parsed {
        for b in &parsed {
            assert_eq!(
                a.cmp(b),
                b.cmp(a).reverse(),
                "comparison of {a} and {b} is not antisymmetric"
            );
            if let Some(sum) = a.checked_add(b) {
                let _ = sum.canonical();
                if let Some(diff) = sum.checked_sub(b) {
                    assert_eq!(&diff, a, "({a} + {b}) - {b} != {a}");
                }
            }
            let _ = a.checked_sub(b).map(|d| d.canonical());
        }
    }
});
