//! Name and identifier rules of the Kubernetes API, with upstream's error texts.
//!
//! Every `is_*` check returns the list of problems as the short messages upstream's
//! `k8s.io/apimachinery/pkg/util/validation` produces (empty when the value is valid), so
//! callers can wrap them into field errors exactly like upstream does. The module also
//! knows which name rule applies to the `metadata.name` of each built-in kind, and how
//! `metadata.generateName` is turned into a name.
//!
//! The regular expressions are written out here (rather than taken from a crate) because
//! their exact text is part of the error message clients see.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;

use rand::Rng;
use regex::Regex;

/// Maximum length of a DNS-1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of a DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Maximum length of a DNS-1035 label.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of the name part of a qualified name.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Maximum length of a label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Maximum total size (keys plus values, in bytes) of an object's annotations.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * (1 << 10);
/// Number of random characters appended to `generateName`.
pub const GENERATED_NAME_RANDOM_LENGTH: usize = 5;
/// Longest `generateName` prefix kept before the random suffix is appended.
pub const MAX_GENERATED_NAME_BASE_LENGTH: usize = 63 - GENERATED_NAME_RANDOM_LENGTH;
/// Alphabet of generated name suffixes: no vowels (no accidental words) and no
/// look-alike characters, as upstream's `util/rand`.
pub const NAME_SUFFIX_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

const QNAME_CHAR_FMT: &str = "[A-Za-z0-9]";
const QNAME_EXT_CHAR_FMT: &str = "[-A-Za-z0-9_.]";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_UNDERSCORE_FMT: &str =
    "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_UNDERSCORE_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const C_IDENTIFIER_FMT: &str = "[A-Za-z_][A-Za-z0-9_]*";
const C_IDENTIFIER_ERR_MSG: &str = "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_'";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_NAME_ERR_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const RELAXED_ENV_VAR_NAME_ERR_MSG: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_ERR_MSG: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";
const HTTP_HEADER_NAME_FMT: &str = "[-A-Za-z0-9]+";
const HTTP_HEADER_NAME_ERR_MSG: &str =
    "a valid HTTP header must consist of alphanumeric characters or '-'";
const HTTP_PATH_FMT: &str = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+";

fn anchored(fmt: &str) -> Regex {
    // The formats above are constants that are known to compile.
    Regex::new(&format!("^(?:{fmt})$")).expect("constant regular expression")
}

static QUALIFIED_NAME_RE: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME_FMT));
static LABEL_VALUE_RE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE_FMT));
static DNS1123_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL_FMT));
static DNS1123_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN_FMT));
static DNS1123_SUBDOMAIN_UNDERSCORE_RE: LazyLock<Regex> =
    LazyLock::new(|| anchored(DNS1123_SUBDOMAIN_UNDERSCORE_FMT));
static DNS1035_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1035_LABEL_FMT));
static C_IDENTIFIER_RE: LazyLock<Regex> = LazyLock::new(|| anchored(C_IDENTIFIER_FMT));
static CONFIG_MAP_KEY_RE: LazyLock<Regex> = LazyLock::new(|| anchored(CONFIG_MAP_KEY_FMT));
static ENV_VAR_NAME_RE: LazyLock<Regex> = LazyLock::new(|| anchored(ENV_VAR_NAME_FMT));
static PERCENT_RE: LazyLock<Regex> = LazyLock::new(|| anchored(PERCENT_FMT));
static HTTP_HEADER_NAME_RE: LazyLock<Regex> = LazyLock::new(|| anchored(HTTP_HEADER_NAME_FMT));
static HTTP_PATH_RE: LazyLock<Regex> = LazyLock::new(|| anchored(HTTP_PATH_FMT));

/// `must be no more than N characters`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `must be non-empty`.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// `must be between LO and HI, inclusive`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Upstream's explanation of a regular-expression failure, with optional examples.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// A "qualified name": an optional DNS subdomain prefix and `/`, then a name of at
/// most 63 characters (label keys, annotation keys, finalizers, condition types...).
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    &qualified_name_fmt(),
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !QUALIFIED_NAME_RE.is_match(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                &qualified_name_fmt(),
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// The qualified-name pattern as upstream spells it in messages.
fn qualified_name_fmt() -> String {
    format!("({QNAME_CHAR_FMT}{QNAME_EXT_CHAR_FMT}*)?{QNAME_CHAR_FMT}")
}

/// A label value: empty, or at most 63 characters of `[-A-Za-z0-9_.]` starting and
/// ending with an alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !LABEL_VALUE_RE.is_match(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            &format!("({})?", qualified_name_fmt()),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// A DNS (RFC 1123) label.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !DNS1123_LABEL_RE.is_match(value) {
        if DNS1123_SUBDOMAIN_RE.is_match(value) {
            // A valid subdomain that is not a label: the length was checked above, so it
            // must be the dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// A DNS (RFC 1123) subdomain.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !DNS1123_SUBDOMAIN_RE.is_match(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// A DNS subdomain that may also contain underscores (pod DNS search paths).
pub fn is_dns1123_subdomain_with_underscore(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !DNS1123_SUBDOMAIN_UNDERSCORE_RE.is_match(value) {
        // Upstream shows the plain subdomain pattern here; keep that.
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_UNDERSCORE_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// A DNS (RFC 1035) label: must start with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !DNS1035_LABEL_RE.is_match(value) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// A C identifier (format only, no length limit).
pub fn is_c_identifier(value: &str) -> Vec<String> {
    if C_IDENTIFIER_RE.is_match(value) {
        Vec::new()
    } else {
        vec![regex_error(
            C_IDENTIFIER_ERR_MSG,
            C_IDENTIFIER_FMT,
            &["my_name", "MY_NAME", "MyName"],
        )]
    }
}

/// A key of a ConfigMap or Secret.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !CONFIG_MAP_KEY_RE.is_match(value) {
        errs.push(regex_error(
            CONFIG_MAP_KEY_ERR_MSG,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(has_chdir_prefix(value));
    errs
}

/// The strict environment variable name rule (used when the relaxed rule is off).
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if !ENV_VAR_NAME_RE.is_match(value) {
        errs.push(regex_error(
            ENV_VAR_NAME_ERR_MSG,
            ENV_VAR_NAME_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errs.extend(has_chdir_prefix(value));
    errs
}

/// The relaxed environment variable name rule (on by default in v1.33): any printable
/// ASCII except `=`.
pub fn is_relaxed_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push(format!("environment variable name {}", empty_error()));
    }
    if value.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(RELAXED_ENV_VAR_NAME_ERR_MSG.to_string());
    }
    errs
}

fn has_chdir_prefix(value: &str) -> Vec<String> {
    if value == "." {
        vec!["must not be '.'".to_string()]
    } else if value == ".." {
        vec!["must not be '..'".to_string()]
    } else if value.starts_with("..") {
        vec!["must not start with '..'".to_string()]
    } else {
        Vec::new()
    }
}

/// A non-zero TCP/UDP port number.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// An inclusive range check.
pub fn is_in_range(value: i64, min: i64, max: i64) -> Vec<String> {
    if (min..=max).contains(&value) {
        Vec::new()
    } else {
        vec![inclusive_range_error(min, max)]
    }
}

/// A Unix user id.
pub fn is_valid_user_id(uid: i64) -> Vec<String> {
    is_in_range(uid, 0, i64::from(i32::MAX))
}

/// A Unix group id.
pub fn is_valid_group_id(gid: i64) -> Vec<String> {
    is_in_range(gid, 0, i64::from(i32::MAX))
}

/// An IANA service (port) name: at most 15 characters of `[-a-z0-9]`, at least one
/// letter, no leading/trailing or doubled hyphens.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !port.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// A percentage such as `25%`.
pub fn is_valid_percent(percent: &str) -> Vec<String> {
    if PERCENT_RE.is_match(percent) {
        Vec::new()
    } else {
        vec![regex_error(PERCENT_ERR_MSG, PERCENT_FMT, &["1%", "93%"])]
    }
}

/// An HTTP header name.
pub fn is_http_header_name(value: &str) -> Vec<String> {
    if HTTP_HEADER_NAME_RE.is_match(value) {
        Vec::new()
    } else {
        vec![regex_error(
            HTTP_HEADER_NAME_ERR_MSG,
            HTTP_HEADER_NAME_FMT,
            &["X-Header-Name"],
        )]
    }
}

/// A domain-prefixed path such as `acme.io/foo`; returns `(bad value, message)` pairs
/// because upstream reports the offending part rather than the whole value.
pub fn is_domain_prefixed_path(value: &str) -> Vec<(String, String)> {
    let Some((host, path)) = value.split_once('/') else {
        return vec![(
            value.to_string(),
            "must be a domain-prefixed path (such as \"acme.io/foo\")".to_string(),
        )];
    };
    if host.is_empty() || path.is_empty() {
        return vec![(
            value.to_string(),
            "must be a domain-prefixed path (such as \"acme.io/foo\")".to_string(),
        )];
    }
    let mut errs: Vec<(String, String)> = is_dns1123_subdomain(host)
        .into_iter()
        .map(|m| (host.to_string(), m))
        .collect();
    if !HTTP_PATH_RE.is_match(path) {
        errs.push((
            path.to_string(),
            regex_error("Invalid path", HTTP_PATH_FMT, &[]),
        ));
    }
    errs
}

/// Parses an IP address the way Go's `net.ParseIP` does, which (unlike Rust's parser)
/// accepts IPv4 octets with leading zeros.
fn parse_ip_sloppy(value: &str) -> Option<IpAddr> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<&str> = value.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut out = [0u8; 4];
    for (slot, octet) in out.iter_mut().zip(&octets) {
        if octet.is_empty() || octet.len() > 3 || !octet.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = octet.parse().ok()?;
    }
    Some(IpAddr::from(out))
}

/// A strictly valid, canonical IP address (upstream's `IsValidIP`).
pub fn is_valid_ip(value: &str) -> Vec<String> {
    let Some(ip) = parse_ip_sloppy(value) else {
        return vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()];
    };
    let mut errs = Vec::new();
    match value.parse::<IpAddr>() {
        Err(_) => errs.push("must not have leading 0s".to_string()),
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => {
            errs.push("must not be an IPv4-mapped IPv6 address".to_string())
        }
        Ok(_) => {}
    }
    if !errs.is_empty() {
        return errs;
    }
    let canonical = ip.to_string();
    if canonical != value {
        errs.push(format!("must be in canonical form (\"{canonical}\")"));
    }
    errs
}

/// Whether the string is an IPv6 address.
pub fn is_ipv6(value: &str) -> bool {
    matches!(parse_ip_sloppy(value), Some(IpAddr::V6(_)))
}

/// A strictly valid, canonical CIDR (upstream's `IsValidCIDR`).
pub fn is_valid_cidr(value: &str) -> Vec<String> {
    let bad =
        || vec!["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".to_string()];
    let Some((addr, len)) = value.split_once('/') else {
        return bad();
    };
    let Some(ip) = parse_ip_sloppy(addr) else {
        return bad();
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let Ok(prefix) = len.parse::<u32>() else {
        return bad();
    };
    if prefix > max || len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return bad();
    }
    let strict_ip = addr.parse::<IpAddr>();
    if strict_ip.is_err() || (len.len() > 1 && len.starts_with('0')) {
        return vec!["must not have leading 0s in IP or prefix length".to_string()];
    }
    if let IpAddr::V6(v6) = ip
        && v6.to_ipv4_mapped().is_some()
    {
        return vec!["must not have an IPv4-mapped IPv6 address".to_string()];
    }
    let masked = mask_ip(ip, prefix);
    if masked != ip {
        return vec!["must not have bits set beyond the prefix length".to_string()];
    }
    let canonical = format!("{masked}/{prefix}");
    if canonical != value {
        return vec![format!("must be in canonical form (\"{canonical}\")")];
    }
    Vec::new()
}

fn mask_ip(ip: IpAddr, prefix: u32) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::from((bits & mask).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::from((bits & mask).to_be_bytes())
        }
    }
}

/// Names that must be usable as a single URL path segment (RBAC roles, CSRs...).
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for illegal in [".", ".."] {
        if name == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    is_valid_path_segment_prefix(name)
}

/// A prefix of a path segment name (used for `generateName`).
pub fn is_valid_path_segment_prefix(name: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|illegal| name.contains(*illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

/// Total size of annotations as upstream counts it: the bytes of every key and value.
pub fn annotations_size(annotations: &BTreeMap<String, String>) -> usize {
    annotations.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Which rule an object's `metadata.name` must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most kinds.
    Dns1123Subdomain,
    /// RFC 1123 label: namespaces, StatefulSets.
    Dns1123Label,
    /// RFC 1035 label: Services.
    Dns1035Label,
    /// Anything usable as a path segment: RBAC objects, CSRs.
    PathSegment,
}

impl NameRule {
    /// Checks a name (or, with `prefix`, a `generateName` prefix) against the rule.
    pub fn validate(self, name: &str, prefix: bool) -> Vec<String> {
        match self {
            NameRule::PathSegment => {
                if prefix {
                    is_valid_path_segment_prefix(name)
                } else {
                    is_valid_path_segment_name(name)
                }
            }
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(&masked(name, prefix)),
            NameRule::Dns1123Label => is_dns1123_label(&masked(name, prefix)),
            NameRule::Dns1035Label => is_dns1035_label(&masked(name, prefix)),
        }
    }
}

fn masked(name: &str, prefix: bool) -> String {
    if prefix {
        mask_trailing_dash(name)
    } else {
        name.to_string()
    }
}

/// Replaces a trailing dash of a `generateName` prefix the way upstream does before
/// checking it, since a suffix will follow. (Upstream drops the last two characters
/// and appends `a`; that quirk is kept so the same prefixes pass and fail.)
pub fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let cut = name.len() - 2;
        match name.get(..cut) {
            Some(head) => format!("{head}a"),
            None => name.to_string(),
        }
    } else {
        name.to_string()
    }
}

/// The name rule upstream applies to `metadata.name` of a kind (`group` is empty for
/// the core group). Unknown kinds, including custom resources, use DNS subdomains.
pub fn name_rule(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("apps", "StatefulSet") => NameRule::Dns1123Label,
        (
            "rbac.authorization.k8s.io",
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
        ) => NameRule::PathSegment,
        ("certificates.k8s.io", "CertificateSigningRequest") => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Checks a name (or `generateName` prefix) for a kind.
pub fn validate_object_name(group: &str, kind: &str, name: &str, prefix: bool) -> Vec<String> {
    name_rule(group, kind).validate(name, prefix)
}

/// Turns a `generateName` prefix into a name: the prefix cut to 58 bytes plus five
/// random characters from [`NAME_SUFFIX_ALPHABET`].
pub fn generate_name(base: &str) -> String {
    generate_name_with(base, &mut rand::rng())
}

/// [`generate_name`] with a caller-supplied random source (for tests).
pub fn generate_name_with<R: Rng + ?Sized>(base: &str, rng: &mut R) -> String {
    let mut cut = base.len().min(MAX_GENERATED_NAME_BASE_LENGTH);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + GENERATED_NAME_RANDOM_LENGTH);
    out.push_str(&base[..cut]);
    let alphabet = NAME_SUFFIX_ALPHABET.as_bytes();
    for _ in 0..GENERATED_NAME_RANDOM_LENGTH {
        out.push(char::from(alphabet[rng.random_range(0..alphabet.len())]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dns1123_subdomain_message_matches_upstream() {
        assert_eq!(
            is_dns1123_subdomain("Foo"),
            vec![
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
    }

    #[test]
    fn name_checks_table() {
        type Check = fn(&str) -> Vec<String>;
        let cases: &[(&str, Check, &str, usize)] = &[
            ("label ok", is_dns1123_label, "my-name", 0),
            ("label dots", is_dns1123_label, "a.b", 1),
            ("label upper", is_dns1123_label, "A", 1),
            ("label too long", is_dns1123_label, &"a".repeat(64), 1),
            ("subdomain ok", is_dns1123_subdomain, "example.com", 0),
            ("subdomain trailing dash", is_dns1123_subdomain, "a-", 1),
            ("subdomain long", is_dns1123_subdomain, &"a".repeat(254), 1),
            ("1035 ok", is_dns1035_label, "abc-123", 0),
            ("1035 digit start", is_dns1035_label, "1abc", 1),
            (
                "qualified ok",
                is_qualified_name,
                "example.com/My_name.1",
                0,
            ),
            ("qualified empty prefix", is_qualified_name, "/name", 1),
            ("qualified two slashes", is_qualified_name, "a/b/c", 1),
            ("qualified bad prefix", is_qualified_name, "Ex/name", 1),
            ("qualified empty", is_qualified_name, "", 2),
            ("qualified long", is_qualified_name, &"a".repeat(64), 1),
            ("label value empty", is_valid_label_value, "", 0),
            ("label value bad", is_valid_label_value, "-a", 1),
            (
                "label value long bad",
                is_valid_label_value,
                &format!("{}-", "a".repeat(63)),
                2,
            ),
            ("config key ok", is_config_map_key, "a_b.c-D", 0),
            ("config key dotdot", is_config_map_key, "..a", 1),
            ("config key slash", is_config_map_key, "a/b", 1),
            ("port name ok", is_valid_port_name, "http-web", 0),
            ("port name digits", is_valid_port_name, "8080", 1),
            ("port name hyphens", is_valid_port_name, "a--b", 1),
            ("percent", is_valid_percent, "25%", 0),
            ("percent bad", is_valid_percent, "25", 1),
            ("relaxed env", is_relaxed_env_var_name, "1 A.b", 0),
            ("relaxed env eq", is_relaxed_env_var_name, "A=B", 1),
            ("strict env digit", is_env_var_name, "1A", 1),
            ("ip ok", is_valid_ip, "10.0.0.1", 0),
            ("ip leading zero", is_valid_ip, "10.0.0.01", 1),
            ("ip garbage", is_valid_ip, "foo", 1),
            ("ip v6 noncanonical", is_valid_ip, "2001:db8:0:0:0:0:0:1", 1),
            ("cidr ok", is_valid_cidr, "10.0.0.0/8", 0),
            ("cidr bits", is_valid_cidr, "10.0.0.1/8", 1),
            ("path segment", is_valid_path_segment_name, "system:a", 0),
            ("path segment slash", is_valid_path_segment_name, "a/b%", 2),
            ("path segment dot", is_valid_path_segment_name, "..", 1),
        ];
        for (name, check, value, want) in cases {
            assert_eq!(check(value).len(), *want, "{name}: {:?}", check(value));
        }
    }

    #[test]
    fn qualified_name_messages() {
        assert_eq!(
            is_qualified_name("/x"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
    }

    #[test]
    fn name_rules_per_kind() {
        let cases = [
            ("", "Pod", NameRule::Dns1123Subdomain),
            ("", "Namespace", NameRule::Dns1123Label),
            ("", "Service", NameRule::Dns1035Label),
            ("apps", "StatefulSet", NameRule::Dns1123Label),
            ("apps", "Deployment", NameRule::Dns1123Subdomain),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                NameRule::PathSegment,
            ),
            ("example.com", "Widget", NameRule::Dns1123Subdomain),
        ];
        for (group, kind, rule) in cases {
            assert_eq!(name_rule(group, kind), rule, "{group}/{kind}");
        }
        assert!(validate_object_name("", "Service", "1abc", false).len() == 1);
        assert!(
            validate_object_name(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "system:x",
                false
            )
            .is_empty()
        );
    }

    #[test]
    fn generate_name_prefix_checks() {
        // A trailing dash is allowed in a prefix, not in a name.
        assert!(NameRule::Dns1123Subdomain.validate("web-", true).is_empty());
        assert_eq!(NameRule::Dns1123Subdomain.validate("web-", false).len(), 1);
        assert!(NameRule::PathSegment.validate("..", true).is_empty());
    }

    #[test]
    fn generated_names_use_upstream_alphabet_and_length() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let name = generate_name_with("web-", &mut rng);
        assert!(name.starts_with("web-"));
        assert_eq!(name.len(), 9);
        assert!(name[4..].chars().all(|c| NAME_SUFFIX_ALPHABET.contains(c)));
        let long = generate_name_with(&"x".repeat(100), &mut rng);
        assert_eq!(long.len(), 63);
        assert!(is_dns1123_subdomain(&generate_name("pod-")).is_empty());
    }

    #[test]
    fn domain_prefixed_path() {
        assert!(is_domain_prefixed_path("acme.io/foo").is_empty());
        assert_eq!(is_domain_prefixed_path("acme").len(), 1);
        assert_eq!(is_domain_prefixed_path("Acme/foo").len(), 1);
        assert_eq!(is_domain_prefixed_path("acme.io/ x").len(), 1);
    }

    #[test]
    fn annotation_size_counts_keys_and_values() {
        let mut m = BTreeMap::new();
        m.insert("ab".to_string(), "cde".to_string());
        assert_eq!(annotations_size(&m), 5);
    }
}
