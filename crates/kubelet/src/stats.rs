//! Resource usage as cAdvisor reports it to the kubelet: the node's CPU, memory,
//! filesystem and network from `/proc` and `statvfs`, each running container's CPU
//! and memory working set from its cgroup (through the runtime), each pod's network
//! counters from its veth. Served as the kubelet's `/stats/summary` (upstream's
//! `statsapi.Summary` JSON), which the API server turns into `metrics.k8s.io`.
//!
//! CPU rates (`usageNanoCores`) need two readings: a sampler refreshes them every
//! [`SAMPLE_PERIOD`], and a summary request takes a fresh reading when the last one
//! is at least a second old.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::runtime::{ContainerState, PodRuntime};
use crate::worker::StatusStore;

/// How often CPU readings are refreshed in the background.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(10);

/// CPU and memory of one container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use, bytes.
    pub memory_usage_bytes: u64,
    /// Memory working set (usage minus inactive file cache), bytes.
    pub memory_working_set_bytes: u64,
}

/// Network counters of a pod (its `eth0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    cpu_ns: u64,
    nano_cores: Option<u64>,
}

/// Keeps CPU readings per container (and the node) to turn counters into rates.
pub struct StatsCollector {
    runtime: Arc<dyn PodRuntime>,
    pods: StatusStore,
    node_name: String,
    fs_path: PathBuf,
    readings: Mutex<HashMap<String, Reading>>,
}

const NODE_KEY: &str = "\0node";

fn now_rfc3339() -> String {
    Timestamp::now().to_string()
}

/// Node CPU time in nanoseconds from `/proc/stat` (all but idle and iowait).
fn node_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)
        .map_or(100, |h| h as u64);
    Some(busy.saturating_mul(1_000_000_000) / hz)
}

/// (total, available) memory in bytes from `/proc/meminfo`.
fn node_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = |key: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    Some((kb("MemTotal:")?, kb("MemAvailable:")?))
}

/// The host's own interfaces from `/proc/net/dev` (not loopback, pod veths or bridges).
fn node_interfaces() -> Vec<(String, NetworkStats)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/dev") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let bridge = std::path::Path::new("/sys/class/net")
            .join(name)
            .join("bridge")
            .exists();
        if name == "lo" || name.starts_with("veth") || bridge {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() < 11 {
            continue;
        }
        out.push((
            name.to_string(),
            NetworkStats {
                rx_bytes: f[0],
                rx_errors: f[2],
                tx_bytes: f[8],
                tx_errors: f[10],
            },
        ));
    }
    out
}

fn fs_stats(path: &std::path::Path, time: &str) -> Value {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frag = s.fragment_size();
            let capacity = s.blocks() * frag;
            let available = s.blocks_available() * frag;
            let free = s.blocks_free() * frag;
            json!({
                "time": time,
                "availableBytes": available,
                "capacityBytes": capacity,
                "usedBytes": capacity.saturating_sub(free),
                "inodesFree": s.files_free(),
                "inodes": s.files(),
                "inodesUsed": s.files().saturating_sub(s.files_free()),
            })
        }
        Err(_) => json!({"time": time}),
    }
}

fn network_json(time: &str, ifaces: &[(String, NetworkStats)]) -> Value {
    let list: Vec<Value> = ifaces
        .iter()
        .map(|(n, s)| {
            json!({"name": n, "rxBytes": s.rx_bytes, "rxErrors": s.rx_errors,
                   "txBytes": s.tx_bytes, "txErrors": s.tx_errors})
        })
        .collect();
    let mut v = list.first().cloned().unwrap_or_else(|| json!({}));
    v["time"] = json!(time);
    v["interfaces"] = Value::Array(list);
    v
}

fn cpu_json(time: &str, r: &Reading) -> Value {
    let mut v = json!({"time": time, "usageCoreNanoSeconds": r.cpu_ns});
    if let Some(rate) = r.nano_cores {
        v["usageNanoCores"] = json!(rate);
    }
    v
}

impl StatsCollector {
    /// A collector for the node `node_name` whose filesystem is the one holding
    /// `fs_path` (the kubelet's root directory).
    pub fn new(
        runtime: Arc<dyn PodRuntime>,
        pods: StatusStore,
        node_name: String,
        fs_path: PathBuf,
    ) -> Self {
        Self {
            runtime,
            pods,
            node_name,
            fs_path,
            readings: Mutex::new(HashMap::new()),
        }
    }

    /// Records a CPU counter reading; returns the reading with its rate (nanocores
    /// over the interval since the previous kept reading, when at least 1 s old).
    fn record(&self, key: &str, cpu_ns: u64) -> Reading {
        let now = Instant::now();
        let Ok(mut map) = self.readings.lock() else {
            return Reading {
                at: now,
                cpu_ns,
                nano_cores: None,
            };
        };
        let next = match map.get(key) {
            Some(prev) if now.duration_since(prev.at) < Duration::from_secs(1) => {
                return Reading {
                    at: now,
                    cpu_ns,
                    nano_cores: prev.nano_cores,
                };
            }
            Some(prev) => {
                let dt = now.duration_since(prev.at).as_nanos().max(1);
                let used = u128::from(cpu_ns.saturating_sub(prev.cpu_ns));
                Reading {
                    at: now,
                    cpu_ns,
                    nano_cores: Some((used * 1_000_000_000 / dt) as u64),
                }
            }
            None => Reading {
                at: now,
                cpu_ns,
                nano_cores: None,
            },
        };
        map.insert(key.to_string(), next);
        next
    }

    /// Takes readings of the node and every running container (the sampler).
    pub async fn sample(&self) {
        if let Some(ns) = node_cpu_ns() {
            self.record(NODE_KEY, ns);
        }
        let Ok(list) = self.runtime.list_containers(None).await else {
            return;
        };
        let mut live = Vec::new();
        for c in list
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
        {
            if let Ok(s) = self.runtime.container_stats(&c.id).await {
                self.record(&c.id, s.cpu_usage_ns);
            }
            live.push(c.id);
        }
        if let Ok(mut map) = self.readings.lock() {
            map.retain(|k, _| k == NODE_KEY || live.contains(k));
        }
    }

    /// Runs [`StatsCollector::sample`] every [`SAMPLE_PERIOD`] until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            self.sample().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SAMPLE_PERIOD) => {}
            }
        }
    }

    /// The `/stats/summary` document.
    pub async fn summary(&self) -> Value {
        let time = now_rfc3339();
        let mut node = json!({"nodeName": self.node_name, "systemContainers": []});
        if let Some(ns) = node_cpu_ns() {
            node["cpu"] = cpu_json(&time, &self.record(NODE_KEY, ns));
        }
        if let Some((total, available)) = node_memory() {
            let used = total.saturating_sub(available);
            node["memory"] = json!({"time": time, "availableBytes": available,
                "usageBytes": used, "workingSetBytes": used, "rssBytes": used,
                "pageFaults": 0, "majorPageFaults": 0});
        }
        node["network"] = network_json(&time, &node_interfaces());
        node["fs"] = fs_stats(&self.fs_path, &time);
        node["runtime"] = json!({"imageFs": fs_stats(&self.fs_path, &time)});
        if let Ok(uptime) = std::fs::read_to_string("/proc/uptime")
            && let Some(secs) = uptime
                .split_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
            && let Ok(boot) = Timestamp::now()
                .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs as i64))
        {
            node["startTime"] = json!(boot.to_string());
        }

        let pods: HashMap<String, k8s_openapi::api::core::v1::Pod> = self
            .pods
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(uid, (p, _))| (uid.clone(), p.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let containers = self.runtime.list_containers(None).await.unwrap_or_default();
        let mut by_pod: HashMap<String, Vec<Value>> = HashMap::new();
        let mut totals: HashMap<String, (u64, u64, u64, u64)> = HashMap::new();
        for c in containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
        {
            let Ok(s) = self.runtime.container_stats(&c.id).await else {
                continue;
            };
            let r = self.record(&c.id, s.cpu_usage_ns);
            let mut v = json!({
                "name": c.name,
                "cpu": cpu_json(&time, &r),
                "memory": {"time": time, "usageBytes": s.memory_usage_bytes,
                           "workingSetBytes": s.memory_working_set_bytes},
            });
            if let Some(t) = c.started_at {
                v["startTime"] = json!(t.to_string());
            }
            let t = totals.entry(c.pod_uid.clone()).or_default();
            t.0 += s.cpu_usage_ns;
            t.1 += r.nano_cores.unwrap_or(0);
            t.2 += s.memory_usage_bytes;
            t.3 += s.memory_working_set_bytes;
            by_pod.entry(c.pod_uid.clone()).or_default().push(v);
        }
        let mut out_pods = Vec::new();
        for (uid, containers) in by_pod {
            let Some(pod) = pods.get(&uid) else { continue };
            let (cpu_ns, cores, mem, ws) = totals.get(&uid).copied().unwrap_or_default();
            let mut p = json!({
                "podRef": {
                    "name": pod.metadata.name,
                    "namespace": pod.metadata.namespace,
                    "uid": uid,
                },
                "containers": containers,
                "cpu": {"time": time, "usageNanoCores": cores, "usageCoreNanoSeconds": cpu_ns},
                "memory": {"time": time, "usageBytes": mem, "workingSetBytes": ws},
            });
            if let Ok(Some(n)) = self.runtime.pod_network_stats(&uid).await {
                p["network"] = network_json(&time, &[("eth0".to_string(), n)]);
            }
            out_pods.push(p);
        }
        json!({"node": node, "pods": out_pods})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readings_parse() {
        assert!(node_cpu_ns().is_some_and(|n| n > 0));
        let (total, avail) = node_memory().expect("meminfo");
        assert!(total > 0 && avail <= total);
        let fs = fs_stats(std::path::Path::new("/"), "t");
        assert!(fs["capacityBytes"].as_u64().is_some_and(|c| c > 0));
    }

    #[tokio::test]
    async fn rates_come_from_two_readings_at_least_a_second_apart() {
        let rt: Arc<dyn PodRuntime> = Arc::new(crate::runtime::FakeRuntime::new());
        let c = StatsCollector::new(rt, Default::default(), "n".into(), "/".into());
        assert_eq!(c.record("x", 1_000).nano_cores, None);
        // Too soon: no rate yet, and the first reading is kept.
        assert_eq!(c.record("x", 2_000).nano_cores, None);
        if let Ok(mut m) = c.readings.lock()
            && let Some(r) = m.get_mut("x")
        {
            r.at -= Duration::from_secs(2);
        }
        // 0.5 s of CPU over ~2 s: about a quarter core.
        let r = c.record("x", 1_000 + 500_000_000);
        let rate = r.nano_cores.expect("rate");
        assert!((240_000_000..=250_000_000).contains(&rate), "{rate}");
    }
}
