//! The JSONPath subset used by CRD `additionalPrinterColumns`, with upstream's
//! "allow missing keys" evaluation.
//!
//! Supported: `.field`, `['field']`/`["field"]`, `[n]` (negative from the end), `[*]`,
//! `.*`, `[start:end]`, `..field` (recursive descent), and filters
//! `[?(@.path)]` / `[?(@.path <op> literal)]` with `==`, `!=`, `<`, `<=`, `>`, `>=` against a
//! string, number or boolean literal (or another `@` path). Written by hand because the
//! available JSONPath crates follow RFC 9535, whose syntax and missing-key behaviour differ
//! from the Kubernetes dialect that CRDs are written against.

use std::cmp::Ordering;

use serde_json::Value;

/// Why a path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct PathError(String);

/// A compiled path.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    /// `..name` / `..*`: the step applied to the value and all its descendants.
    Descend(Box<Step>),
    Filter(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(JsonPath),
    Literal(Value),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: JsonPath,
    /// `None` for an existence test.
    compare: Option<(Op, Operand)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

fn err(msg: impl Into<String>) -> PathError {
    PathError(msg.into())
}

/// Characters that end a bare field name (upstream's "terminators").
fn ends_field(c: char) -> bool {
    c.is_whitespace() || matches!(c, '.' | ',' | '[' | ']' | '$' | '@' | '{' | '}' | '(' | ')')
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn bump(&mut self, n: usize) {
        self.pos += n;
    }

    fn field_name(&mut self) -> String {
        let len = self.rest().find(ends_field).unwrap_or(self.rest().len());
        let name = self.rest()[..len].to_string();
        self.bump(len);
        name
    }

    fn steps(&mut self) -> Result<Vec<Step>, PathError> {
        let mut steps = Vec::new();
        loop {
            match self.peek() {
                None => return Ok(steps),
                Some('.') => {
                    self.bump(1);
                    if self.peek() == Some('.') {
                        self.bump(1);
                        let inner = match self.peek() {
                            Some('*') => {
                                self.bump(1);
                                Step::Wildcard
                            }
                            Some('[') => self.bracket()?,
                            _ => {
                                let name = self.field_name();
                                if name.is_empty() {
                                    return Err(err("missing field name after '..'"));
                                }
                                Step::Field(name)
                            }
                        };
                        steps.push(Step::Descend(Box::new(inner)));
                    } else if self.peek() == Some('*') {
                        self.bump(1);
                        steps.push(Step::Wildcard);
                    } else {
                        let name = self.field_name();
                        // A lone "." (the whole object) is allowed and means nothing more.
                        if !name.is_empty() {
                            steps.push(Step::Field(name));
                        }
                    }
                }
                Some('[') => {
                    let step = self.bracket()?;
                    steps.push(step);
                }
                Some(c) => return Err(err(format!("unrecognized character in path: {c:?}"))),
            }
        }
    }

    fn bracket(&mut self) -> Result<Step, PathError> {
        self.bump(1); // '['
        let rest = self.rest();
        if let Some(after) = rest.strip_prefix("?(") {
            let close = find_filter_end(after).ok_or_else(|| err("unterminated filter"))?;
            let body = &after[..close];
            self.bump(2 + close + 2); // "?(" body ")]"
            return Ok(Step::Filter(Box::new(parse_filter(body)?)));
        }
        if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
            let inner = &rest[1..];
            let end = inner
                .find(q)
                .ok_or_else(|| err("unterminated quoted field"))?;
            let key = inner[..end].to_string();
            let after = &inner[end + 1..];
            if !after.starts_with(']') {
                return Err(err("expected ']' after quoted field"));
            }
            self.bump(1 + end + 1 + 1);
            return Ok(Step::Field(key));
        }
        let end = rest.find(']').ok_or_else(|| err("unterminated '['"))?;
        let body = rest[..end].trim();
        self.bump(end + 1);
        if body == "*" {
            return Ok(Step::Wildcard);
        }
        if let Some((a, b)) = body.split_once(':') {
            let bound = |x: &str| -> Result<Option<i64>, PathError> {
                let x = x.trim();
                if x.is_empty() {
                    Ok(None)
                } else {
                    x.parse().map(Some).map_err(|_| err("bad slice bound"))
                }
            };
            if b.contains(':') {
                return Err(err("slice steps are not supported"));
            }
            return Ok(Step::Slice(bound(a)?, bound(b)?));
        }
        body.parse::<i64>()
            .map(Step::Index)
            .map_err(|_| err(format!("bad array index {body:?}")))
    }
}

/// Index of the `)` that closes a filter body, followed by `]`, skipping quoted text.
fn find_filter_end(body: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut prev = '\0';
    for (i, c) in body.char_indices() {
        match quote {
            Some(q) if c == q && prev != '\\' => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ')' && body[i + 1..].starts_with(']') => return Some(i),
            None => {}
        }
        prev = c;
    }
    None
}

fn parse_filter(body: &str) -> Result<Filter, PathError> {
    // Split at the first comparison operator outside quotes.
    let mut quote: Option<char> = None;
    let bytes = body.as_bytes();
    let mut split = None;
    for (i, c) in body.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if matches!(c, '=' | '!' | '<' | '>') => {
                let two = bytes.get(i + 1).copied() == Some(b'=');
                let op = match (c, two) {
                    ('=', true) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('>', true) => Op::Ge,
                    ('<', false) => Op::Lt,
                    ('>', false) => Op::Gt,
                    _ => return Err(err(format!("unrecognized filter operator in {body:?}"))),
                };
                split = Some((i, if two { 2 } else { 1 }, op));
                break;
            }
            None => {}
        }
    }
    match split {
        None => Ok(Filter {
            left: relative_path(body.trim())?,
            compare: None,
        }),
        Some((at, len, op)) => {
            let left = relative_path(body[..at].trim())?;
            let right = operand(body[at + len..].trim())?;
            Ok(Filter {
                left,
                compare: Some((op, right)),
            })
        }
    }
}

/// A path relative to the filtered element: `@.a.b` (or `@` itself).
fn relative_path(text: &str) -> Result<JsonPath, PathError> {
    let rest = text
        .strip_prefix('@')
        .ok_or_else(|| err(format!("filter operand must start with '@': {text:?}")))?;
    let mut p = Parser { text: rest, pos: 0 };
    let steps = p.steps()?;
    Ok(JsonPath { steps })
}

fn operand(text: &str) -> Result<Operand, PathError> {
    if text.starts_with('@') {
        return Ok(Operand::Path(relative_path(text)?));
    }
    if let Some(q) = text.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let inner = text[1..]
            .strip_suffix(q)
            .ok_or_else(|| err(format!("unterminated string {text:?}")))?;
        return Ok(Operand::Literal(Value::String(
            inner.replace(&format!("\\{q}"), &q.to_string()),
        )));
    }
    match text {
        "true" => return Ok(Operand::Literal(Value::Bool(true))),
        "false" => return Ok(Operand::Literal(Value::Bool(false))),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Operand::Literal(Value::from(i)));
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Operand::Literal(Value::from(f))),
        _ => Err(err(format!("unrecognized filter operand {text:?}"))),
    }
}

impl JsonPath {
    /// Parses a column path such as `.status.conditions[?(@.type=="Ready")].status`.
    pub(super) fn parse(text: &str) -> Result<JsonPath, PathError> {
        let text = text.trim();
        let text = text.strip_prefix('$').unwrap_or(text);
        if !text.is_empty() && !text.starts_with(['.', '[']) {
            return Err(err(format!("path must start with '.' or '[': {text:?}")));
        }
        let mut p = Parser { text, pos: 0 };
        let steps = p.steps()?;
        Ok(JsonPath { steps })
    }

    /// All values the path selects; missing keys select nothing. `Err` mirrors upstream's
    /// evaluation errors (filtering a non-list, comparing unlike types), which upstream
    /// turns into an empty cell.
    pub(super) fn find<'a>(&self, root: &'a Value) -> Result<Vec<&'a Value>, ()> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in current {
                apply(step, v, &mut next)?;
            }
            current = next;
        }
        Ok(current)
    }
}

fn apply<'a>(step: &Step, v: &'a Value, out: &mut Vec<&'a Value>) -> Result<(), ()> {
    match step {
        Step::Field(name) => {
            if let Some(x) = v.as_object().and_then(|m| m.get(name)) {
                out.push(x);
            }
        }
        Step::Wildcard => match v {
            Value::Object(m) => out.extend(m.values()),
            Value::Array(a) => out.extend(a.iter()),
            _ => {}
        },
        Step::Index(i) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let idx = if *i < 0 { len + i } else { *i };
                if idx < 0 || idx >= len {
                    return Err(());
                }
                out.push(&a[idx as usize]);
            }
        }
        Step::Slice(start, end) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let from = norm(start.unwrap_or(0));
                let to = norm(end.unwrap_or(len));
                if from < to {
                    out.extend(a[from as usize..to as usize].iter());
                }
            }
        }
        Step::Descend(inner) => {
            let mut all = Vec::new();
            descendants(v, &mut all);
            for x in all {
                apply(inner, x, out)?;
            }
        }
        Step::Filter(filter) => {
            let Value::Array(items) = v else {
                return Err(());
            };
            for item in items {
                if filter.matches(item)? {
                    out.push(item);
                }
            }
        }
    }
    Ok(())
}

fn descendants<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Object(m) => m.values().for_each(|x| descendants(x, out)),
        Value::Array(a) => a.iter().for_each(|x| descendants(x, out)),
        _ => {}
    }
}

impl Filter {
    fn matches(&self, item: &Value) -> Result<bool, ()> {
        let lefts = self.left.find(item);
        let Some((op, right)) = &self.compare else {
            return Ok(lefts.is_ok_and(|l| !l.is_empty()));
        };
        let lefts = lefts?;
        let left = match lefts.as_slice() {
            [] => return Ok(false),
            [one] => *one,
            _ => return Err(()), // "can only compare one element at a time"
        };
        let right = match right {
            Operand::Literal(v) => v,
            Operand::Path(p) => match p.find(item)?.first() {
                Some(v) => *v,
                None => return Ok(false),
            },
        };
        let ord = compare(left, right, *op)?;
        Ok(match op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
        })
    }
}

/// Upstream compares only values of the same basic kind (integer with integer, float with
/// float, string with string, bool with bool for (in)equality); anything else is an error.
fn compare(a: &Value, b: &Value, op: Op) -> Result<Ordering, ()> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) if matches!(op, Op::Eq | Op::Ne) => Ok(x.cmp(y)),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Ok(x.cmp(&y)),
            (None, None) => {
                let (x, y) = (x.as_f64().ok_or(())?, y.as_f64().ok_or(())?);
                x.partial_cmp(&y).ok_or(())
            }
            _ => Err(()),
        },
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "metadata": {"name": "a", "annotations": {"example.com/key": "v"}},
            "spec": {"replicas": 3, "ratio": 0.5, "tags": ["x", "y", "z"], "empty": null},
            "status": {"conditions": [
                {"type": "Synced", "status": "False", "priority": 1},
                {"type": "Ready", "status": "True", "priority": 2}
            ]}
        })
    }

    #[test]
    fn evaluates_paths() {
        let d = doc();
        let cases: &[(&str, Vec<Value>)] = &[
            (".spec.replicas", vec![json!(3)]),
            ("$.spec.replicas", vec![json!(3)]),
            (".spec.missing", vec![]),
            (".spec.missing.deeper", vec![]),
            (".spec.empty", vec![Value::Null]),
            (".spec.tags[0]", vec![json!("x")]),
            (".spec.tags[-1]", vec![json!("z")]),
            (".spec.tags[*]", vec![json!("x"), json!("y"), json!("z")]),
            (".spec.tags[1:]", vec![json!("y"), json!("z")]),
            (".metadata.annotations['example.com/key']", vec![json!("v")]),
            (
                r#".status.conditions[?(@.type=="Ready")].status"#,
                vec![json!("True")],
            ),
            (
                ".status.conditions[?(@.type == 'Synced')].status",
                vec![json!("False")],
            ),
            (
                r#".status.conditions[?(@.type!="Ready")].type"#,
                vec![json!("Synced")],
            ),
            (
                ".status.conditions[?(@.priority>1)].type",
                vec![json!("Ready")],
            ),
            (
                ".status.conditions[?(@.priority)].type",
                vec![json!("Synced"), json!("Ready")],
            ),
            (".status.conditions[?(@.nope)].type", vec![]),
            ("..type", vec![json!("Synced"), json!("Ready")]),
        ];
        for (path, want) in cases {
            let p = JsonPath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let got: Vec<Value> = p
                .find(&d)
                .unwrap_or_else(|()| panic!("{path}: eval error"))
                .into_iter()
                .cloned()
                .collect();
            assert_eq!(&got, want, "{path}");
        }
    }

    #[test]
    fn evaluation_errors() {
        let d = doc();
        for path in [
            ".spec.tags[7]",
            ".spec[?(@.x)]",
            ".status.conditions[?(@.priority==1.5)].type",
        ] {
            let p = JsonPath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(p.find(&d), Err(()), "{path}");
        }
    }

    #[test]
    fn rejects_bad_paths() {
        for path in [
            "spec.replicas",
            ".spec[",
            ".spec[abc]",
            ".a[?(@.x==)]",
            ".a[?(b==1)]",
            ".a['x",
        ] {
            assert!(JsonPath::parse(path).is_err(), "{path}");
        }
    }
}
