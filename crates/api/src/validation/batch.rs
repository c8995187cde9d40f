//! Job and CronJob validation, including the standard cron schedule syntax.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::apps::go_label_selector;
use super::meta::{MetaRules, validate_label_selector, validate_meta};
use super::pod::validate_pod_template_spec;
use super::{Errs, FieldError, Path, decode, go_string_map, immutable, non_negative};
use crate::names;
use crate::selector::Selector;

/// Labels the Job controller's generated selector relies on.
pub(crate) const LEGACY_CONTROLLER_UID: &str = "controller-uid";
pub(crate) const LEGACY_JOB_NAME: &str = "job-name";
pub(crate) const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub(crate) const JOB_NAME: &str = "batch.kubernetes.io/job-name";

fn has_label(meta: &ObjectMeta, path: &Path, key: &str, expected: &str, errs: &mut Errs) {
    let labels = meta.labels.clone().unwrap_or_default();
    let lp = path.child("labels").key(key);
    match labels.get(key) {
        None => errs.push(FieldError::required(lp, format!("must be '{expected}'"))),
        Some(v) if v != expected => errs.push(
            FieldError::invalid(
                lp,
                serde_json::to_value(&labels).unwrap_or(Value::Null),
                format!("must be '{expected}'"),
            )
            .with_value_text(go_string_map(Some(&labels))),
        ),
        Some(_) => {}
    }
}

fn validate_generated_selector(job: &Job, require_prefixed: bool, errs: &mut Errs) {
    let spec = job.spec.clone().unwrap_or_default();
    if spec.manual_selector == Some(true) {
        return;
    }
    let Some(selector) = &spec.selector else {
        return;
    };
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required(Path::new("metadata").child("uid"), ""));
    }
    let meta = spec.template.metadata.clone().unwrap_or_default();
    let tp = Path::new("spec").child("template").child("metadata");
    has_label(&meta, &tp, LEGACY_CONTROLLER_UID, &uid, errs);
    has_label(&meta, &tp, LEGACY_JOB_NAME, &name, errs);
    let mut expected = BTreeMap::new();
    if require_prefixed {
        has_label(&meta, &tp, CONTROLLER_UID, &uid, errs);
        has_label(&meta, &tp, JOB_NAME, &name, errs);
        expected.insert(CONTROLLER_UID.to_string(), uid.clone());
        expected.insert(JOB_NAME.to_string(), name.clone());
    }
    expected.insert(LEGACY_CONTROLLER_UID.to_string(), uid);
    expected.insert(LEGACY_JOB_NAME.to_string(), name);
    if let Ok(parsed) = Selector::from_label_selector(selector)
        && !parsed.matches(&expected)
    {
        let value = serde_json::to_value(selector).unwrap_or(Value::Null);
        errs.push(
            FieldError::invalid(
                Path::new("spec").child("selector"),
                value,
                "`selector` not auto-generated",
            )
            .with_value_text(go_label_selector(selector)),
        );
    }
}

/// Upstream's `validateJobSpec`: the parts shared with CronJob job templates.
fn validate_job_spec_common(spec: &JobSpec, path: &Path, errs: &mut Errs) {
    for (value, field) in [
        (spec.parallelism.map(i64::from), "parallelism"),
        (spec.completions.map(i64::from), "completions"),
        (spec.active_deadline_seconds, "activeDeadlineSeconds"),
        (spec.backoff_limit.map(i64::from), "backoffLimit"),
        (
            spec.ttl_seconds_after_finished.map(i64::from),
            "ttlSecondsAfterFinished",
        ),
        (
            spec.backoff_limit_per_index.map(i64::from),
            "backoffLimitPerIndex",
        ),
    ] {
        if let Some(v) = value {
            non_negative(v, &path.child(field), errs);
        }
    }
    if let Some(max) = spec.max_failed_indexes {
        non_negative(i64::from(max), &path.child("maxFailedIndexes"), errs);
        if spec.backoff_limit_per_index.is_none() {
            errs.push(FieldError::required(
                path.child("backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
    }
    if let Some(managed_by) = &spec.managed_by {
        for (bad, msg) in names::is_domain_prefixed_path(managed_by) {
            errs.push(FieldError::invalid(path.child("managedBy"), bad, msg));
        }
        if managed_by.len() > 63 {
            errs.push(FieldError::too_long(path.child("managedBy"), 63));
        }
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if let Some(mode) = &spec.completion_mode {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                path.child("completionMode"),
                mode.as_str(),
                &["NonIndexed", "Indexed"],
            ));
        }
        if indexed {
            if spec.completions.is_none() {
                errs.push(FieldError::required(
                    path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = spec.parallelism
                && p > 100_000
            {
                errs.push(FieldError::invalid(
                    path.child("parallelism"),
                    p,
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
            if let (Some(c), Some(m)) = (spec.completions, spec.max_failed_indexes)
                && m > c
            {
                errs.push(FieldError::invalid(
                    path.child("maxFailedIndexes"),
                    m,
                    "must be less than or equal to completions",
                ));
            }
            if let Some(m) = spec.max_failed_indexes
                && m > 100_000
            {
                errs.push(FieldError::invalid(
                    path.child("maxFailedIndexes"),
                    m,
                    "must be less than or equal to 100000",
                ));
            }
        }
    }
    if !indexed {
        if let Some(b) = spec.backoff_limit_per_index {
            errs.push(FieldError::invalid(
                path.child("backoffLimitPerIndex"),
                b,
                "requires indexed completion mode",
            ));
        }
        if let Some(m) = spec.max_failed_indexes {
            errs.push(FieldError::invalid(
                path.child("maxFailedIndexes"),
                m,
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(policy) = &spec.success_policy
        && !indexed
    {
        let value = serde_json::to_value(policy).unwrap_or(Value::Null);
        errs.push(FieldError::invalid(
            path.child("successPolicy"),
            value,
            "requires indexed completion mode",
        ));
    }
    if let Some(policy) = &spec.pod_replacement_policy {
        let rp = path.child("podReplacementPolicy");
        if spec.pod_failure_policy.is_some() {
            if policy != "Failed" {
                errs.push(FieldError::not_supported(rp, policy.as_str(), &["Failed"]));
            }
        } else if !matches!(policy.as_str(), "Failed" | "TerminatingOrFailed") {
            errs.push(FieldError::not_supported(
                rp,
                policy.as_str(),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    errs.extend(validate_pod_template_spec(
        &spec.template,
        &path.child("template"),
    ));
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("");
    let rp = path.child("template").child("spec").child("restartPolicy");
    if restart == "Always" || restart.is_empty() {
        errs.push(FieldError::required(
            rp,
            "valid values: \"OnFailure\", \"Never\"",
        ));
    } else if restart != "OnFailure" && restart != "Never" {
        errs.push(FieldError::not_supported(
            rp,
            restart,
            &["OnFailure", "Never"],
        ));
    } else if spec.pod_failure_policy.is_some() && restart != "Never" {
        errs.push(FieldError::invalid(
            rp,
            restart,
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
}

/// Upstream's `ValidateJobSpec`: common rules plus the selector.
fn validate_job_spec(spec: &JobSpec, path: &Path, errs: &mut Errs) {
    validate_job_spec_common(spec, path, errs);
    match &spec.selector {
        None => errs.push(FieldError::required(path.child("selector"), "")),
        Some(sel) => errs.extend(validate_label_selector(
            Some(sel),
            path.child("selector").as_str(),
        )),
    }
    if let Ok(parsed) = Selector::from_optional_label_selector(spec.selector.as_ref()) {
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        if !parsed.matches(&labels.cloned().unwrap_or_default()) {
            errs.push(
                FieldError::invalid(
                    path.child("template").child("metadata").child("labels"),
                    serde_json::to_value(labels).unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                )
                .with_value_text(go_string_map(labels)),
            );
        }
    }
}

/// Jobs.
pub(crate) fn validate_job(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let job: Job = decode(obj)?;
    let old_job: Option<Job> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("batch", "Job");
    // Jobs created before the prefixed labels existed keep validating without them.
    let require_prefixed = match &old_job {
        None => true,
        Some(o) => {
            let labels = o
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.contains_key(JOB_NAME) && labels.contains_key(CONTROLLER_UID)
        }
    };
    let mut errs = validate_meta(&job.metadata, None, rules);
    validate_generated_selector(&job, require_prefixed, &mut errs);
    let spec = job.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    validate_job_spec(&spec, &path, &mut errs);
    if spec.completion_mode.as_deref() == Some("Indexed")
        && let Some(c) = spec.completions.filter(|c| *c > 0)
    {
        let name = job.metadata.name.clone().unwrap_or_default();
        let hostname = format!("{name}-{}", c - 1);
        if !names::is_dns1123_label(&hostname).is_empty() {
            errs.push(FieldError::invalid(
                Path::new("metadata").child("name"),
                name,
                format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
    let Some(old_job) = old_job else {
        return Ok(errs);
    };
    let rules = MetaRules::for_kind("batch", "Job");
    errs.extend(validate_meta(&job.metadata, Some(&old_job.metadata), rules));
    let old_spec = old_job.spec.clone().unwrap_or_default();
    validate_job_spec(&spec, &path, &mut errs);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if !indexed {
        immutable(
            &spec.completions,
            &old_spec.completions,
            &path.child("completions"),
            &mut errs,
        );
    } else if spec.completions != old_spec.completions
        && let Some(c) = spec.completions
        && Some(c) != spec.parallelism
    {
        errs.push(FieldError::invalid(
            path.child("completions"),
            c,
            "can only be modified in tandem with spec.parallelism",
        ));
    }
    immutable(
        &spec.selector,
        &old_spec.selector,
        &path.child("selector"),
        &mut errs,
    );
    // Suspended jobs that never started may change their scheduling directives.
    let mut old_template = old_spec.template.clone();
    let suspended = old_spec.suspend == Some(true);
    let never_started = old_job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_none();
    if suspended && never_started {
        let new_template = &spec.template;
        let mut old_pod = old_template.spec.clone().unwrap_or_default();
        let new_pod = new_template.spec.clone().unwrap_or_default();
        let node_affinity = new_pod
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.clone());
        match (&mut old_pod.affinity, &new_pod.affinity) {
            (Some(_), None) => {
                if let Some(a) = old_pod.affinity.as_mut() {
                    a.node_affinity = None;
                    if a.pod_affinity.is_none() && a.pod_anti_affinity.is_none() {
                        old_pod.affinity = None;
                    }
                }
            }
            (None, Some(_)) => {
                old_pod.affinity = Some(k8s_openapi::api::core::v1::Affinity {
                    node_affinity,
                    ..Default::default()
                });
            }
            (Some(a), Some(_)) => a.node_affinity = node_affinity,
            (None, None) => {}
        }
        old_pod.node_selector = new_pod.node_selector.clone();
        old_pod.tolerations = new_pod.tolerations.clone();
        old_pod.scheduling_gates = new_pod.scheduling_gates.clone();
        old_template.spec = Some(old_pod);
        let mut old_meta = old_template.metadata.clone().unwrap_or_default();
        let new_meta = new_template.metadata.clone().unwrap_or_default();
        old_meta.annotations = new_meta.annotations;
        old_meta.labels = new_meta.labels;
        old_template.metadata = Some(old_meta);
    }
    immutable(
        &spec.template,
        &old_template,
        &path.child("template"),
        &mut errs,
    );
    immutable(
        &spec.completion_mode,
        &old_spec.completion_mode,
        &path.child("completionMode"),
        &mut errs,
    );
    immutable(
        &spec.pod_failure_policy,
        &old_spec.pod_failure_policy,
        &path.child("podFailurePolicy"),
        &mut errs,
    );
    immutable(
        &spec.backoff_limit_per_index,
        &old_spec.backoff_limit_per_index,
        &path.child("backoffLimitPerIndex"),
        &mut errs,
    );
    immutable(
        &spec.managed_by,
        &old_spec.managed_by,
        &path.child("managedBy"),
        &mut errs,
    );
    immutable(
        &spec.success_policy,
        &old_spec.success_policy,
        &path.child("successPolicy"),
        &mut errs,
    );
    Ok(errs)
}

/// CronJobs.
pub(crate) fn validate_cron_job(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let cj: CronJob = decode(obj)?;
    let old_cj: Option<CronJob> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("batch", "CronJob");
    let mut errs = validate_meta(&cj.metadata, old_cj.as_ref().map(|o| &o.metadata), rules);
    let spec = cj.spec.clone().unwrap_or_default();
    let old_spec = old_cj.as_ref().and_then(|o| o.spec.clone());
    let path = Path::new("spec");
    let sp = path.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(&sp, ""));
    } else {
        if let Err(e) = parse_cron(&spec.schedule) {
            errs.push(FieldError::invalid(&sp, spec.schedule.as_str(), e));
        }
        let allow_tz = old_spec.as_ref().is_some_and(|o| o.schedule.contains("TZ"));
        if allow_tz && spec.schedule.contains("TZ") && spec.time_zone.is_some() {
            errs.push(FieldError::invalid(
                &sp,
                spec.schedule.as_str(),
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && spec.schedule.contains("TZ") {
            errs.push(FieldError::invalid(
                &sp,
                spec.schedule.as_str(),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(deadline) = spec.starting_deadline_seconds {
        non_negative(deadline, &path.child("startingDeadlineSeconds"), &mut errs);
    }
    if old_spec
        .as_ref()
        .is_none_or(|o| o.time_zone != spec.time_zone)
    {
        validate_time_zone(
            spec.time_zone.as_deref(),
            &path.child("timeZone"),
            &mut errs,
        );
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("");
    let cp = path.child("concurrencyPolicy");
    if policy.is_empty() {
        errs.push(FieldError::required(&cp, ""));
    } else if !matches!(policy, "Allow" | "Forbid" | "Replace") {
        errs.push(FieldError::not_supported(
            &cp,
            policy,
            &["Allow", "Forbid", "Replace"],
        ));
    }
    let jp = path.child("jobTemplate");
    let job_spec = spec.job_template.spec.clone().unwrap_or_default();
    validate_job_spec_common(&job_spec, &jp.child("spec"), &mut errs);
    if let Some(sel) = &job_spec.selector {
        let value = serde_json::to_value(sel).unwrap_or(Value::Null);
        errs.push(
            FieldError::invalid(
                jp.child("spec").child("selector"),
                value,
                "`selector` will be auto-generated",
            )
            .with_value_text(go_label_selector(sel)),
        );
    }
    if job_spec.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            jp.child("spec").child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    for (limit, field) in [
        (
            spec.successful_jobs_history_limit,
            "successfulJobsHistoryLimit",
        ),
        (spec.failed_jobs_history_limit, "failedJobsHistoryLimit"),
    ] {
        if let Some(l) = limit {
            non_negative(i64::from(l), &path.child(field), &mut errs);
        }
    }
    let name = cj.metadata.name.clone().unwrap_or_default();
    if old_cj.is_none() && name.len() > 52 {
        errs.push(FieldError::invalid(
            Path::new("metadata").child("name"),
            name,
            "must be no more than 52 characters",
        ));
    }
    Ok(errs)
}

fn validate_time_zone(tz: Option<&str>, path: &Path, errs: &mut Errs) {
    let Some(tz) = tz else {
        return;
    };
    if tz.is_empty() {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let part_ok = |part: &str| {
        part != "."
            && part != ".."
            && !part.starts_with('-')
            && (1..=14).contains(&part.len())
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
    };
    if !tz.split('/').all(part_ok) {
        errs.push(FieldError::invalid(
            path,
            tz,
            format!("unknown time zone {tz}"),
        ));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
}

/// Bounds and names of one cron field.
struct CronField {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTH_NAMES: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DOW_NAMES: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const CRON_FIELDS: [CronField; 5] = [
    CronField {
        min: 0,
        max: 59,
        names: &[],
    },
    CronField {
        min: 0,
        max: 23,
        names: &[],
    },
    CronField {
        min: 1,
        max: 31,
        names: &[],
    },
    CronField {
        min: 1,
        max: 12,
        names: MONTH_NAMES,
    },
    CronField {
        min: 0,
        max: 6,
        names: DOW_NAMES,
    },
];

/// Checks a schedule with the standard five-field cron syntax the CronJob controller
/// accepts (robfig/cron's `ParseStandard`), returning its error text on failure. Time
/// zone names are checked for shape only: the zone database is outside this crate.
pub fn parse_cron(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec.to_string();
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let Some(space) = spec.find(' ') else {
            let eq = spec.find('=').unwrap_or(0);
            return Err(format!(
                "provided bad location {}: unknown time zone",
                &spec[eq + 1..]
            ));
        };
        spec = spec[space..].trim().to_string();
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d if d.starts_with("every ") => {
                let dur = &d["every ".len()..];
                if parse_go_duration(dur) {
                    Ok(())
                } else {
                    Err(format!(
                        "failed to parse duration {spec}: time: invalid duration {dur:?}"
                    ))
                }
            }
            _ => Err(format!("unrecognized descriptor: {spec}")),
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, bounds) in fields.iter().zip(CRON_FIELDS.iter()) {
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            cron_range(expr, bounds)?;
        }
    }
    Ok(())
}

fn cron_int(expr: &str) -> Result<u32, String> {
    match expr.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {expr}")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: value out of range")),
        Err(_) => Err(format!("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: invalid syntax")),
    }
}

fn cron_int_or_name(expr: &str, names: &[&str]) -> Result<u32, String> {
    let lower = expr.to_lowercase();
    if let Some(pos) = names.iter().position(|n| *n == lower) {
        // Months count from 1, weekdays from 0.
        let offset = if names.len() == 12 { 1 } else { 0 };
        return Ok(pos as u32 + offset);
    }
    cron_int(expr)
}

fn cron_range(expr: &str, f: &CronField) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (f.min, f.max)
    } else {
        let start = cron_int_or_name(low_high[0], f.names)?;
        let end = match low_high.len() {
            1 => start,
            2 => cron_int_or_name(low_high[1], f.names)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = cron_int(range_and_step[1])?;
            if single {
                end = f.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < f.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            f.min
        ));
    }
    if end > f.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            f.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

/// Whether a string is a Go duration (`1h30m`, `90s`, `1.5h`).
fn parse_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if num_len == 0 || rest[..num_len].chars().all(|c| c == '.') {
            return false;
        }
        rest = &rest[num_len..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(**u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_schedules() {
        let ok = [
            "*/5 * * * *",
            "0 0 * * 0",
            "0 12 1 jan-mar mon-fri",
            "@hourly",
            "@every 1h30m",
            "15,45 */2 1-15/3 * ?",
            "TZ=UTC 0 0 * * *",
        ];
        for s in ok {
            assert_eq!(parse_cron(s), Ok(()), "{s}");
        }
        let bad = [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
        ];
        for (s, want) in bad {
            assert_eq!(parse_cron(s), Err(want.to_string()), "{s}");
        }
    }
}
