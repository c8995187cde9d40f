//! Pod status computation (phase, conditions, container statuses) from what the
//! runtime reports, and the crash back-off schedule.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::runtime::{ContainerInfo, ContainerState};

/// Back-off settings: `initial` doubling up to `max`; reset after a container ran
/// `reset_after` without failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    /// Upstream: 10 s doubling to 5 min, reset after 10 min.
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// One key's back-off state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Current delay (zero: none yet).
    pub delay: Duration,
}

impl Backoff {
    /// The delay to wait before the next restart, after a container that ran for
    /// `ran`. Updates the state as upstream's `flowcontrol.Backoff.Next`.
    pub fn next(&mut self, cfg: &BackoffConfig, ran: Duration) -> Duration {
        if ran >= cfg.reset_after {
            self.delay = Duration::ZERO;
        }
        self.delay = if self.delay.is_zero() {
            cfg.initial
        } else {
            (self.delay * 2).min(cfg.max)
        };
        self.delay
    }
}

/// Go's `Duration.String()` for messages (`20s`, `5m0s`).
pub fn go_duration(d: Duration) -> String {
    api::duration::format(d)
}

/// `name_namespace(uid)` as upstream's `format.Pod`.
pub fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// A waiting reason the worker decided for a container (back-off, pull errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: Option<String>,
}

/// What the worker knows beyond the runtime's container list.
#[derive(Clone, Debug, Default)]
pub struct WorkerView {
    pub pod_ips: Vec<String>,
    pub host_ip: String,
    pub sandbox_ready: bool,
    pub start_time: Option<Timestamp>,
    /// Per container name.
    pub waiting: HashMap<String, Waiting>,
    /// Per container name: readiness from probes (absent: ready when running).
    pub ready: HashMap<String, bool>,
}

fn terminated(c: &ContainerInfo) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: Some(format!("flotilla://{}", c.id)),
        exit_code: c.exit_code.unwrap_or(0),
        reason: c.reason.clone(),
        message: c.message.clone(),
        started_at: c.started_at.map(Time),
        finished_at: c.finished_at.map(Time),
        signal: None,
    }
}

/// Latest and previous instance of `name` among `containers`.
pub fn instances<'a>(
    containers: &'a [ContainerInfo],
    name: &str,
) -> (Option<&'a ContainerInfo>, Option<&'a ContainerInfo>) {
    let mut mine: Vec<&ContainerInfo> = containers.iter().filter(|c| c.name == name).collect();
    mine.sort_by_key(|c| (c.attempt, c.created_at));
    let latest = mine.pop();
    (latest, mine.pop())
}

fn container_status(
    name: &str,
    image: &str,
    containers: &[ContainerInfo],
    view: &WorkerView,
    default_waiting: &str,
) -> ContainerStatus {
    let (latest, previous) = instances(containers, name);
    let waiting = view.waiting.get(name);
    let mut st = ContainerStatus {
        name: name.into(),
        image: image.into(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        ..Default::default()
    };
    let waiting_state = |w: &Waiting| K8sState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.reason.clone()),
            message: w.message.clone(),
        }),
        ..Default::default()
    };
    match latest {
        None => {
            let w = waiting.cloned().unwrap_or(Waiting {
                reason: default_waiting.into(),
                message: None,
            });
            st.state = Some(waiting_state(&w));
        }
        Some(c) => {
            st.restart_count = c.attempt as i32;
            st.image_id = c.image_id.clone();
            st.container_id = Some(format!("flotilla://{}", c.id));
            match c.state {
                ContainerState::Running => {
                    st.state = Some(K8sState {
                        running: Some(ContainerStateRunning {
                            started_at: c.started_at.map(Time),
                        }),
                        ..Default::default()
                    });
                    st.started = Some(true);
                    st.ready = view.ready.get(name).copied().unwrap_or(true);
                    if let Some(p) = previous {
                        st.last_state = Some(K8sState {
                            terminated: Some(terminated(p)),
                            ..Default::default()
                        });
                    }
                }
                ContainerState::Exited => {
                    if let Some(w) = waiting {
                        st.state = Some(waiting_state(w));
                        st.last_state = Some(K8sState {
                            terminated: Some(terminated(c)),
                            ..Default::default()
                        });
                    } else {
                        st.state = Some(K8sState {
                            terminated: Some(terminated(c)),
                            ..Default::default()
                        });
                        if let Some(p) = previous {
                            st.last_state = Some(K8sState {
                                terminated: Some(terminated(p)),
                                ..Default::default()
                            });
                        }
                    }
                }
                ContainerState::Created | ContainerState::Unknown => {
                    st.state = Some(waiting_state(&Waiting {
                        reason: default_waiting.into(),
                        message: None,
                    }));
                }
            }
        }
    }
    if st.last_state.is_none() {
        st.last_state = Some(K8sState::default());
    }
    st
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { None } else { reason.map(String::from) },
        message: if ok { None } else { message },
        ..Default::default()
    }
}

/// Compute the pod's status. Transition times are kept from `previous` for
/// conditions whose status did not change, so an unchanged pod yields an equal
/// status (and no API write).
pub fn compute(
    pod: &Pod,
    containers: &[ContainerInfo],
    view: &WorkerView,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> PodStatus {
    let Some(spec) = pod.spec.as_ref() else {
        return PodStatus::default();
    };
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let inits = spec.init_containers.clone().unwrap_or_default();
    let init_statuses: Vec<ContainerStatus> = inits
        .iter()
        .map(|c| {
            container_status(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                containers,
                view,
                "PodInitializing",
            )
        })
        .collect();
    let init_done = |s: &ContainerStatus| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    };
    let init_failed = init_statuses.iter().any(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
    }) && policy == "Never";
    let initialized = init_statuses.iter().all(init_done);
    let waiting_reason = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            container_status(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                containers,
                view,
                waiting_reason,
            )
        })
        .collect();
    // Phase as upstream's getPhase.
    let (mut running, mut waiting, mut stopped, mut succeeded, mut failed) = (0, 0, 0, 0, 0);
    for s in &statuses {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            } else {
                failed += 1;
            }
        } else if st.waiting.is_some() {
            let restarted = s
                .last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some());
            if restarted {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
    }
    let phase = if init_failed {
        "Failed"
    } else if !initialized || waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            "OnFailure" if succeeded == stopped => "Succeeded",
            "OnFailure" => "Running",
            _ if failed > 0 => "Failed",
            _ => "Succeeded",
        }
    } else {
        "Pending"
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let unready_msg = format!("containers with unready status: [{}]", unready.join(" "));
    let uninit: Vec<&str> = init_statuses
        .iter()
        .filter(|s| !init_done(s))
        .map(|s| s.name.as_str())
        .collect();
    let ready = unready.is_empty();
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            view.sandbox_ready && !terminal,
            None,
            None,
        ),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                uninit.join(" ")
            )),
        ),
        condition(
            "Ready",
            ready && !terminal,
            Some(not_ready_reason),
            Some(unready_msg.clone()),
        ),
        condition(
            "ContainersReady",
            ready && !terminal,
            Some(not_ready_reason),
            Some(unready_msg),
        ),
        condition("PodScheduled", true, None, None),
    ];
    let prev_conds = previous
        .and_then(|p| p.conditions.clone())
        .unwrap_or_default();
    for c in &mut conditions {
        c.last_transition_time = prev_conds
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
            .and_then(|p| p.last_transition_time.clone())
            .or(Some(Time(now)));
        c.last_probe_time = None;
    }
    let pod_ips: Vec<PodIP> = view
        .pod_ips
        .iter()
        .map(|ip| PodIP { ip: ip.clone() })
        .collect();
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: (!view.host_ip.is_empty()).then(|| view.host_ip.clone()),
        host_ips: (!view.host_ip.is_empty()).then(|| {
            vec![HostIP {
                ip: view.host_ip.clone(),
            }]
        }),
        pod_ip: view.pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty()).then_some(pod_ips),
        start_time: view.start_time.map(Time),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        qos_class: previous
            .and_then(|p| p.qos_class.clone())
            .or_else(|| pod.status.as_ref().and_then(|s| s.qos_class.clone()))
            .or(Some("BestEffort".into())),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule_matches_upstream() {
        let cfg = BackoffConfig::default();
        assert_eq!(cfg.initial, Duration::from_secs(10));
        assert_eq!(cfg.max, Duration::from_secs(300));
        assert_eq!(cfg.reset_after, Duration::from_secs(600));
        let mut b = Backoff::default();
        let short = Duration::from_secs(1);
        let seq: Vec<u64> = (0..7).map(|_| b.next(&cfg, short).as_secs()).collect();
        assert_eq!(seq, vec![10, 20, 40, 80, 160, 300, 300]);
        // Ran 10 minutes: back to the start.
        assert_eq!(b.next(&cfg, Duration::from_secs(600)).as_secs(), 10);
        assert_eq!(go_duration(Duration::from_secs(20)), "20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": [
                {"name": "a", "image": "img-a"}, {"name": "b", "image": "img-b"}]}
        }))
        .expect("pod")
    }

    fn info(name: &str, attempt: u32, state: ContainerState, code: Option<i32>) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}-{attempt}"),
            pod_uid: "u1".into(),
            name: name.into(),
            attempt,
            image: format!("img-{name}"),
            image_id: format!("id-{name}"),
            state,
            exit_code: code,
            reason: code.map(|c| if c == 0 { "Completed" } else { "Error" }.into()),
            message: None,
            created_at: Timestamp::from_second(1000 + attempt as i64).expect("ts"),
            started_at: Some(Timestamp::from_second(1000).expect("ts")),
            finished_at: code.map(|_| Timestamp::from_second(1001).expect("ts")),
        }
    }

    fn phase(s: &PodStatus) -> &str {
        s.phase.as_deref().unwrap_or_default()
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == t))
            .expect("condition")
    }

    #[test]
    fn status_phases_and_conditions() {
        let now = Timestamp::from_second(2000).expect("ts");
        let view = WorkerView {
            pod_ips: vec!["10.88.0.2".into()],
            host_ip: "192.168.1.5".into(),
            sandbox_ready: true,
            ..Default::default()
        };
        // Nothing yet: Pending, ContainerCreating.
        let s = compute(&pod("Always"), &[], &view, None, now);
        assert_eq!(phase(&s), "Pending");
        let a = &s.container_statuses.as_ref().expect("cs")[0];
        assert_eq!(
            a.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("ContainerCreating")
        );
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [a b]")
        );
        // Both running: Running and Ready, ids and IPs reported.
        let running = [
            info("a", 0, ContainerState::Running, None),
            info("b", 0, ContainerState::Running, None),
        ];
        let s2 = compute(&pod("Always"), &running, &view, Some(&s), now);
        assert_eq!(phase(&s2), "Running");
        assert_eq!(cond(&s2, "Ready").status, "True");
        assert_eq!(cond(&s2, "PodScheduled").status, "True");
        assert_eq!(s2.pod_ip.as_deref(), Some("10.88.0.2"));
        assert_eq!(s2.host_ip.as_deref(), Some("192.168.1.5"));
        let a = &s2.container_statuses.as_ref().expect("cs")[0];
        assert_eq!(a.container_id.as_deref(), Some("flotilla://a-0"));
        assert_eq!(a.image_id, "id-a");
        // PodScheduled kept its transition time; Ready changed it.
        assert_eq!(
            cond(&s2, "PodScheduled").last_transition_time,
            cond(&s, "PodScheduled").last_transition_time
        );
        // Unchanged input → equal status.
        let later = Timestamp::from_second(3000).expect("ts");
        assert_eq!(
            compute(&pod("Always"), &running, &view, Some(&s2), later),
            s2
        );
        // Crash loop: waiting CrashLoopBackOff with lastState, restartCount, phase Running.
        let mut v = view.clone();
        v.waiting.insert(
            "a".into(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some("back-off 10s".into()),
            },
        );
        let crashed = [
            info("a", 0, ContainerState::Exited, Some(1)),
            info("a", 1, ContainerState::Exited, Some(1)),
            info("b", 0, ContainerState::Running, None),
        ];
        let s3 = compute(&pod("Always"), &crashed, &v, Some(&s2), now);
        assert_eq!(phase(&s3), "Running");
        let a = &s3.container_statuses.as_ref().expect("cs")[0];
        assert_eq!(a.restart_count, 1);
        assert!(!a.ready);
        assert_eq!(
            a.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            a.last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code),
            Some(1)
        );
        // restartPolicy Never: one failure → Failed; all zero → Succeeded.
        let done = [
            info("a", 0, ContainerState::Exited, Some(0)),
            info("b", 0, ContainerState::Exited, Some(2)),
        ];
        assert_eq!(
            phase(&compute(&pod("Never"), &done, &view, None, now)),
            "Failed"
        );
        let ok = [
            info("a", 0, ContainerState::Exited, Some(0)),
            info("b", 0, ContainerState::Exited, Some(0)),
        ];
        let s4 = compute(&pod("OnFailure"), &ok, &view, None, now);
        assert_eq!(phase(&s4), "Succeeded");
        assert_eq!(cond(&s4, "Ready").reason.as_deref(), Some("PodCompleted"));
    }
}
