//! Seccomp for containers: profiles in the OCI runtime-spec form (`linux.seccomp`, what
//! runc reads from the same bundle), compiled to BPF with `seccompiler` for the built-in
//! runtime and installed by the container's init right before it execs.
//!
//! `RuntimeDefault` is this runtime's own default profile: it allows every system call
//! except the ones that reach past a container's walls (kernel modules, kexec, reboot,
//! clock setting, swap, accounting, keyrings, bpf/perf, mount/namespace/pivot_root
//! operations without `CAP_SYS_ADMIN`, ptrace and cross-process memory access without
//! `CAP_SYS_PTRACE`, …), which fail with `EPERM`. containerd's default profile is an
//! allow-list with the same intent; a deny-list is a deliberate, documented difference:
//! new harmless system calls keep working, while the dangerous families are closed.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscall, LinuxSyscallBuilder,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

/// The seccomp profile a container asks for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Seccomp {
    /// The runtime's default profile ([`runtime_default`]).
    RuntimeDefault,
    /// A profile given in full (Kubernetes `Localhost`: a JSON file on the node).
    Profile(LinuxSeccomp),
}

/// An invalid or unsupported profile.
#[derive(Debug, thiserror::Error)]
#[error("seccomp profile: {0}")]
pub struct SeccompError(pub String);

/// Always refused by [`runtime_default`].
const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "move_pages",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "uselib",
    "userfaultfd",
    "ustat",
];

/// Refused unless the container holds `CAP_SYS_ADMIN`.
const NEED_SYS_ADMIN: &[&str] = &[
    "mount",
    "umount2",
    "pivot_root",
    "setns",
    "unshare",
    "name_to_handle_at",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
];

/// Refused unless the container holds `CAP_SYS_PTRACE`.
const NEED_SYS_PTRACE: &[&str] = &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"];

/// The runtime's default profile for a container holding `caps` (names like
/// `SYS_ADMIN` or `CAP_SYS_ADMIN`).
pub fn runtime_default(caps: &[String]) -> LinuxSeccomp {
    let has = |c: &str| {
        caps.iter()
            .any(|x| x.trim_start_matches("CAP_").eq_ignore_ascii_case(c))
    };
    let mut names: Vec<String> = DENIED.iter().map(|s| s.to_string()).collect();
    if !has("SYS_ADMIN") {
        names.extend(NEED_SYS_ADMIN.iter().map(|s| s.to_string()));
    }
    if !has("SYS_PTRACE") {
        names.extend(NEED_SYS_PTRACE.iter().map(|s| s.to_string()));
    }
    let deny = LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(libc::EPERM as u32)
        .build()
        .expect("static syscall rule");
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(vec![deny])
        .build()
        .expect("static profile")
}

/// Parses a profile file: the OCI `linux.seccomp` form, which is also what
/// Docker/containerd profile files hold (`defaultAction`, `syscalls[].names|action|args`).
pub fn parse_profile(bytes: &[u8]) -> Result<LinuxSeccomp, SeccompError> {
    serde_json::from_slice(bytes).map_err(|e| SeccompError(format!("invalid profile: {e}")))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction, SeccompError> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActAllow => SeccompAction::Allow,
        A::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        A::ScmpActKill | A::ScmpActKillThread => SeccompAction::KillThread,
        A::ScmpActKillProcess => SeccompAction::KillProcess,
        A::ScmpActTrap => SeccompAction::Trap,
        A::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(0)),
        A::ScmpActLog => SeccompAction::Log,
        other => {
            return Err(SeccompError(format!(
                "action {other:?} is not supported by the built-in runtime"
            )));
        }
    })
}

fn condition(a: &LinuxSeccompArg) -> Result<SeccompCondition, SeccompError> {
    use LinuxSeccompOperator as O;
    let (op, value) = match a.op() {
        O::ScmpCmpEq => (SeccompCmpOp::Eq, a.value()),
        O::ScmpCmpNe => (SeccompCmpOp::Ne, a.value()),
        O::ScmpCmpLt => (SeccompCmpOp::Lt, a.value()),
        O::ScmpCmpLe => (SeccompCmpOp::Le, a.value()),
        O::ScmpCmpGt => (SeccompCmpOp::Gt, a.value()),
        O::ScmpCmpGe => (SeccompCmpOp::Ge, a.value()),
        // libseccomp: (arg & value) == valueTwo.
        O::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    let index = u8::try_from(a.index())
        .map_err(|_| SeccompError(format!("argument index {} out of range", a.index())))?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SeccompError(format!("argument {index}: {e}")))
}

/// The rules of one syscall entry: unconditional (empty) or one rule ANDing its args.
fn rules_of(s: &LinuxSyscall) -> Result<Vec<SeccompRule>, SeccompError> {
    let args = s.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let conds = args.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
    Ok(vec![
        SeccompRule::new(conds).map_err(|e| SeccompError(e.to_string()))?,
    ])
}

/// Adds `rules` for syscall `nr` to `map`: an unconditional entry wins over conditions.
fn add(map: &mut BTreeMap<i64, Vec<SeccompRule>>, nr: i64, rules: Vec<SeccompRule>) {
    match map.get_mut(&nr) {
        Some(existing) if existing.is_empty() => {}
        Some(existing) if rules.is_empty() => existing.clear(),
        Some(existing) => existing.extend(rules),
        None => {
            map.insert(nr, rules);
        }
    }
}

/// Compiles `profile` for this machine's architecture into the filters to install, in
/// order. Seccomp runs every installed filter and takes the most restrictive verdict, so
/// a profile with several actions becomes one base filter (the default action for calls
/// no entry names, "allow" for named ones so the entry's own filter decides) plus one
/// filter per other action. System calls this architecture does not have are skipped,
/// as libseccomp does.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<BpfProgram>, SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SeccompError(format!("architecture: {e}")))?;
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut base: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut by_action: Vec<(SeccompAction, BTreeMap<i64, Vec<SeccompRule>>)> = Vec::new();
    for s in profile.syscalls().iter().flatten() {
        let act = action(s.action(), s.errno_ret())?;
        if act == default {
            continue;
        }
        let rules = rules_of(s)?;
        for name in s.names() {
            let Ok(nr) = syscalls::Sysno::from_str(name) else {
                continue;
            };
            let nr = nr.id() as i64;
            add(&mut base, nr, rules.clone());
            if act != SeccompAction::Allow {
                let idx = match by_action.iter().position(|(a, _)| *a == act) {
                    Some(i) => i,
                    None => {
                        by_action.push((act.clone(), BTreeMap::new()));
                        by_action.len() - 1
                    }
                };
                add(&mut by_action[idx].1, nr, rules.clone());
            }
        }
    }
    let mut out = Vec::new();
    let build = |rules, mismatch, matched| -> Result<BpfProgram, SeccompError> {
        SeccompFilter::new(rules, mismatch, matched, arch)
            .and_then(TryInto::try_into)
            .map_err(|e| SeccompError(e.to_string()))
    };
    if default != SeccompAction::Allow {
        if base.is_empty() {
            return Err(SeccompError(
                "the default action refuses every system call and no call is allowed".into(),
            ));
        }
        out.push(build(base, default, SeccompAction::Allow)?);
    }
    for (act, rules) in by_action {
        if !rules.is_empty() {
            out.push(build(rules, SeccompAction::Allow, act)?);
        }
    }
    Ok(out)
}

/// Installs compiled filters on the calling thread (needs no_new_privs or
/// `CAP_SYS_ADMIN`); every later exec keeps them.
pub fn install(filters: &[BpfProgram]) -> Result<(), SeccompError> {
    for f in filters {
        seccompiler::apply_filter(f).map_err(|e| SeccompError(format!("install: {e}")))?;
    }
    Ok(())
}

/// Syscall names of a profile that this architecture does not know (for a warning).
pub fn unknown_names(profile: &LinuxSeccomp) -> Vec<String> {
    let mut seen = HashSet::new();
    profile
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|s| s.names().iter())
        .filter(|n| syscalls::Sysno::from_str(n).is_err() && seen.insert(n.to_string()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_is_gated_by_capabilities() {
        let names =
            |p: &LinuxSeccomp| -> Vec<String> { p.syscalls().as_ref().unwrap()[0].names().clone() };
        let plain = runtime_default(&["CHOWN".into(), "NET_BIND_SERVICE".into()]);
        assert!(names(&plain).contains(&"unshare".to_string()));
        assert!(names(&plain).contains(&"ptrace".to_string()));
        assert!(names(&plain).contains(&"kexec_load".to_string()));
        let admin = runtime_default(&["CAP_SYS_ADMIN".into()]);
        assert!(!names(&admin).contains(&"mount".to_string()));
        assert!(names(&admin).contains(&"ptrace".to_string()));
        assert!(names(&admin).contains(&"reboot".to_string()));
        assert_eq!(compile(&plain).unwrap().len(), 1);
    }

    #[test]
    fn docker_style_profiles_compile() {
        let p = parse_profile(
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                 "syscalls": [
                   {"names": ["read", "write", "exit_group", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
                   {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                   {"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"},
                   {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
                 ]}"#,
        )
        .unwrap();
        // Base filter + one for KILL_PROCESS.
        assert_eq!(compile(&p).unwrap().len(), 2);
        assert_eq!(unknown_names(&p), vec!["no_such_call".to_string()]);
        assert!(parse_profile(b"{\"defaultAction\": \"SCMP_ACT_NOPE\"}").is_err());
        let nothing = parse_profile(br#"{"defaultAction": "SCMP_ACT_ERRNO"}"#).unwrap();
        assert!(compile(&nothing).is_err());
        let notify = parse_profile(br#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).unwrap();
        assert!(compile(&notify).is_err());
    }
}
