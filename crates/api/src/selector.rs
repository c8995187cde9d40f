//! Label selectors: the string grammar of `?labelSelector=` (and `kubectl -l`), the
//! structured `metav1.LabelSelector` of workload specs, matching, and the canonical
//! string form.
//!
//! The parser follows upstream's lexer and recursive-descent parser token for token, so
//! that the same inputs are accepted and rejected with the same messages (for example
//! `unable to parse requirement: found ')', expected: ...`). Requirements are kept
//! sorted by key, as upstream does, which makes [`Selector`]'s `Display` deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::names;

/// Errors from parsing or building a label selector. `Display` gives upstream's text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A requirement could not be parsed or is invalid (upstream wraps these).
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A token out of place between requirements.
    #[error("found '{found}', expected: {expected}")]
    Syntax { found: String, expected: String },
    /// A requirement built from structured input is invalid (aggregated field errors).
    #[error("{0}")]
    Invalid(String),
    /// A `matchExpressions` operator that is not In, NotIn, Exists or DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
}

/// How a requirement relates a key to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value`
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>1` (integer comparison)
    GreaterThan,
    /// `key<1` (integer comparison)
    LessThan,
}

impl Operator {
    /// The operator's name in upstream's `selection.Operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

/// Read access to a set of labels, whatever container holds them.
pub trait Labels {
    /// The value of a label, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// A JSON labels object; anything that is not an object has no labels.
impl Labels for Value {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// No labels at all.
impl<L: Labels> Labels for Option<&L> {
    fn label(&self, key: &str) -> Option<&str> {
        self.and_then(|l| l.label(key))
    }
}

/// One clause of a selector: a key, an operator and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, checking it as upstream's `NewRequirement` does.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let errs = requirement_errors(key, operator, &values);
        if errs.is_empty() {
            Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            })
        } else {
            Err(SelectorError::Invalid(aggregate(&errs)))
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values in the order given.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a set of labels satisfies this requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::NotIn | Operator::NotEquals => {
                value.is_none_or(|v| !self.values.iter().any(|x| x == v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Upstream's `NewRequirement` checks, rendered as field error strings with the
/// (empty-rooted) paths upstream uses: `key`, `values`, `values[0][key]`.
fn requirement_errors(key: &str, operator: Operator, values: &[String]) -> Vec<String> {
    let mut errs = Vec::new();
    let key_errs = names::is_qualified_name(key);
    if !key_errs.is_empty() {
        errs.push(format!(
            "key: Invalid value: {}: {}",
            go_quote(key),
            key_errs.join("; ")
        ));
    }
    // An empty list reaches here only from structured selectors, where upstream holds
    // it as a nil slice.
    let shown = if values.is_empty() {
        "[]string(nil)".to_string()
    } else {
        go_string_slice(values)
    };
    let bad_values = || format!("values: Invalid value: {shown}");
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => errs.push(format!(
            "{}: for 'in', 'notin' operators, values set can't be empty",
            bad_values()
        )),
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            errs.push(format!(
                "{}: exact-match compatibility requires one single value",
                bad_values()
            ))
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(format!(
            "{}: values set must be empty for exists and does not exist",
            bad_values()
        )),
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(format!(
                    "{}: for 'Gt', 'Lt' operators, exactly one value is required",
                    bad_values()
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(format!(
                        "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                        go_quote(v)
                    ));
                }
            }
        }
        _ => {}
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = names::is_valid_label_value(v);
        if !msgs.is_empty() {
            errs.push(format!(
                "values[{i}][{key}]: Invalid value: {}: {}",
                go_quote(v),
                msgs.join("; ")
            ));
        }
    }
    errs
}

/// Joins error strings as upstream's aggregate error does.
fn aggregate(errs: &[String]) -> String {
    let mut seen = BTreeSet::new();
    let unique: Vec<&String> = errs.iter().filter(|e| seen.insert(e.as_str())).collect();
    match unique.as_slice() {
        [one] => (*one).clone(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Quotes a string the way Go's `%q` does for the characters label input can hold.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%#v` of a `[]string`.
pub(crate) fn go_string_slice(values: &[String]) -> String {
    let inner: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", inner.join(", "))
}

/// A label selector: the AND of its requirements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// Matches every set of labels (the empty selector).
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Matches nothing (what a missing `metav1.LabelSelector` means).
    pub fn nothing() -> Self {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the string form (`a=b,c in (x,y),!d`).
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(input).parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements,
            nothing: false,
        })
    }

    /// A selector matching exactly the given labels, without validating them
    /// (upstream's `SelectorFromSet`).
    pub fn from_set(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// A selector matching exactly the given labels, validating keys and values.
    pub fn validated_from_set(labels: &BTreeMap<String, String>) -> Result<Self, SelectorError> {
        let mut requirements = Vec::with_capacity(labels.len());
        for (k, v) in labels {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        Ok(Selector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a structured `metav1.LabelSelector` (upstream's `LabelSelectorAsSelector`
    /// for a non-nil selector; use [`Selector::from_optional_label_selector`] for `nil`).
    pub fn from_label_selector(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let match_labels = selector.match_labels.as_ref();
        let expressions = selector.match_expressions.as_deref().unwrap_or_default();
        if match_labels.is_none_or(BTreeMap::is_empty) && expressions.is_empty() {
            return Ok(Selector::everything());
        }
        let mut requirements = Vec::new();
        for (k, v) in match_labels.into_iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in expressions {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::UnknownOperator(other.to_string())),
            };
            requirements.push(Requirement::new(
                &expr.key,
                operator,
                expr.values.clone().unwrap_or_default(),
            )?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements,
            nothing: false,
        })
    }

    /// `None` selects nothing, as upstream treats a nil `*metav1.LabelSelector`.
    pub fn from_optional_label_selector(
        selector: Option<&LabelSelector>,
    ) -> Result<Self, SelectorError> {
        match selector {
            Some(s) => Selector::from_label_selector(s),
            None => Ok(Selector::nothing()),
        }
    }

    /// Converts a `metav1.LabelSelector` given as JSON; `null` selects nothing.
    pub fn from_label_selector_value(value: &Value) -> Result<Self, SelectorError> {
        if value.is_null() {
            return Ok(Selector::nothing());
        }
        let selector: LabelSelector = serde_json::from_value(value.clone())
            .map_err(|e| SelectorError::Invalid(format!("invalid label selector: {e}")))?;
        Selector::from_label_selector(&selector)
    }

    /// True when the selector places no restriction (matches everything).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the selector that matches nothing.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Adds requirements (kept sorted by key).
    pub fn with_requirements(
        mut self,
        requirements: impl IntoIterator<Item = Requirement>,
    ) -> Self {
        if self.nothing {
            return self;
        }
        self.requirements.extend(requirements);
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches the `metadata.labels` of a JSON object.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").unwrap_or(&Value::Null);
        self.matches(labels)
    }

    /// If the selector pins `key` to a single value, that value.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let req = self.requirements.iter().find(|r| r.key == key)?;
        match (req.operator, req.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [one]) => Some(one),
            _ => None,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(ch: u8) -> bool {
    matches!(ch, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Byte-oriented lexer mirroring upstream's (a NUL byte ends the input, as there).
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special(ch) {
            self.scan_special()
        } else {
            self.scan_identifier()
        }
    }

    fn scan_identifier(&mut self) -> (Token, String) {
        let mut buf = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
        }
        let tok = keyword(&buf).unwrap_or(Token::Identifier);
        (tok, String::from_utf8_lossy(&buf).into_owned())
    }

    fn scan_special(&mut self) -> (Token, String) {
        let mut buf = Vec::new();
        let mut last: Option<(Token, String)> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
            if let Some(tok) = keyword(&buf) {
                last = Some((tok, String::from_utf8_lossy(&buf).into_owned()));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        last.unwrap_or_else(|| {
            (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&buf)
                ),
            )
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(input: &str) -> Self {
        let mut lexer = Lexer {
            s: input.as_bytes(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let end = item.0 == Token::EndOfString;
            items.push(item);
            if end {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn item(&self, at: usize, context: Context) -> (Token, String) {
        let (tok, lit) = self
            .items
            .get(at)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        let tok = match (context, tok) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            (_, t) => t,
        };
        (tok, lit)
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        self.item(self.position, context)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.item(self.position, context);
        if self.position < self.items.len() {
            self.position += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(SelectorError::Requirement)?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(SelectorError::Syntax {
                                    found: l2,
                                    expected: "identifier after ','".into(),
                                });
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax {
                                found: l,
                                expected: "',' or 'end of string'".into(),
                            });
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(SelectorError::Syntax {
                        found: lit,
                        expected: "!, identifier, or 'end of string'".into(),
                    });
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = operator {
            return build(&key, op, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        build(&key, operator, values.into_iter().collect())
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let key_errs = names::is_qualified_name(&lit);
        if !key_errs.is_empty() {
            // Upstream validates with a nil field path here, which prints as `<nil>`.
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&lit),
                key_errs.join("; ")
            ));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((lit, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{lit}', expected: {BINARY_OPERATORS}")),
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let set = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(set)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if tok2 == Token::Comma {
                        self.consume(Context::Values);
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if matches!(tok, Token::EndOfString | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(BTreeSet::from([lit]))
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

fn build(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, String> {
    Requirement::new(key, operator, values).map_err(|e| match e {
        SelectorError::Invalid(msg) => msg,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_and_print_table() {
        let cases = [
            ("", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            ("  x  =  a  ", "x=a"),
            ("x in (b,a)", "x in (a,b)"),
            ("x notin (a)", "x notin (a)"),
            ("x", "x"),
            ("!x", "!x"),
            ("z,y=1,!x", "!x,y=1,z"),
            (
                "x in (foo,,baz),y,z notin ()",
                "x in (,baz,foo),y,z notin ()",
            ),
            ("x=", "x="),
            ("x>1", "x>1"),
            ("x<1", "x<1"),
            ("x in (in)", "x in (in)"),
            ("in in (notin)", "in in (notin)"),
            ("example.com/app=web", "example.com/app=web"),
            ("a in (b),a notin (c)", "a in (b),a notin (c)"),
        ];
        for (input, want) in cases {
            let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sel.to_string(), want, "input {input:?}");
            // The printed form parses back to the same selector.
            assert_eq!(
                Selector::parse(&sel.to_string()).unwrap(),
                sel,
                "round trip {input:?}"
            );
        }
    }

    #[test]
    fn parse_errors_match_upstream() {
        let cases = [
            ("x=a=b", "found '=', expected: ',' or 'end of string'"),
            (
                "x in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "x in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            ("x=a,", "found '', expected: identifier after ','"),
            (
                ",x",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "x y",
                "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x foo (a)",
                "unable to parse requirement: found 'foo', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x notin",
                "unable to parse requirement: found '' expected: '('",
            ),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            (
                "x>a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
        ];
        for (input, want) in cases {
            let err = Selector::parse(input).expect_err(input).to_string();
            assert!(
                err.starts_with(want) || err == want,
                "{input:?}: got {err:?}, want {want:?}"
            );
        }
        let err = Selector::parse("a/b/c=d").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name"
            ),
            "{err}"
        );
        let err = Selector::parse("x=-a").unwrap_err().to_string();
        assert!(err.starts_with("unable to parse requirement: values[0][x]: Invalid value: \"-a\": a valid label must be"), "{err}");
    }

    #[test]
    fn matching_table() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (db,web)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("n>4", true),
            ("n<5", false),
            ("app>1", false),
            ("missing>1", false),
            ("missing in (x)", false),
        ];
        for (input, want) in cases {
            let sel = Selector::parse(input).unwrap();
            assert_eq!(sel.matches(&l), want, "{input}");
            assert_eq!(
                sel.matches(&json!({"app": "web", "tier": "front", "n": "5"})),
                want,
                "{input} json"
            );
        }
        assert!(Selector::everything().is_empty());
        assert!(Selector::everything().matches(&BTreeMap::new()));
        assert!(!Selector::nothing().matches(&l));
        assert!(!Selector::nothing().is_empty());
        let obj = json!({"metadata": {"labels": {"app": "web"}}});
        assert!(Selector::parse("app=web").unwrap().matches_object(&obj));
        assert!(
            !Selector::parse("app")
                .unwrap()
                .matches_object(&json!({"metadata": {}}))
        );
    }

    #[test]
    fn from_label_selector() {
        let ls = LabelSelector {
            match_labels: Some(labels(&[("b", "1")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "a".into(),
                    operator: "In".into(),
                    values: Some(vec!["y".into(), "x".into()]),
                },
                LabelSelectorRequirement {
                    key: "c".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        let sel = Selector::from_label_selector(&ls).unwrap();
        assert_eq!(sel.to_string(), "a in (x,y),b=1,!c");
        assert_eq!(
            Selector::from_label_selector(&LabelSelector::default()).unwrap(),
            Selector::everything()
        );
        assert!(
            Selector::from_optional_label_selector(None)
                .unwrap()
                .is_nothing()
        );

        let bad_op = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Foo".into(),
                values: None,
            }]),
        };
        assert_eq!(
            Selector::from_label_selector(&bad_op)
                .unwrap_err()
                .to_string(),
            "\"Foo\" is not a valid label selector operator"
        );
        let empty_in = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(
            Selector::from_label_selector_value(&empty_in)
                .unwrap_err()
                .to_string(),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        let bad_key = json!({"matchLabels": {"-a": "b"}});
        assert!(
            Selector::from_label_selector_value(&bad_key)
                .unwrap_err()
                .to_string()
                .starts_with("key: Invalid value: \"-a\": name part must consist")
        );
        assert!(
            Selector::from_label_selector_value(&Value::Null)
                .unwrap()
                .is_nothing()
        );
    }

    #[test]
    fn exact_match_and_sets() {
        let sel = Selector::parse("a=1,b in (2),c in (3,4)").unwrap();
        assert_eq!(sel.requires_exact_match("a"), Some("1"));
        assert_eq!(sel.requires_exact_match("b"), Some("2"));
        assert_eq!(sel.requires_exact_match("c"), None);
        let set = Selector::from_set(&labels(&[("z", "1"), ("a", "2")]));
        assert_eq!(set.to_string(), "a=2,z=1");
        assert!(Selector::validated_from_set(&labels(&[("a", "b c")])).is_err());
    }
}
