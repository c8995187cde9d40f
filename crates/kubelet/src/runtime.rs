//! What the kubelet needs from the node: the [`PodRuntime`] trait (sandboxes,
//! images, containers, exec), and [`FakeRuntime`], an in-memory implementation for
//! tests and for running the kubelet logic without containers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;

/// Errors from the node's runtime.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("pulling image {image}: {message}")]
    Pull { image: String, message: String },
    #[error("{0}")]
    Other(String),
}

/// A pod's sandbox (its network namespace and the like).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxInfo {
    pub id: String,
    /// Pod IPs, primary first; empty for host-network pods (the kubelet then reports
    /// the node IP).
    pub pod_ips: Vec<IpAddr>,
}

/// An image present on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The reference as the pod spec writes it (`nginx`).
    pub image: String,
    /// Resolved identity, e.g. `docker.io/library/nginx@sha256:…`.
    pub image_id: String,
    pub size: u64,
}

/// Everything needed to create one container.
#[derive(Clone, Debug)]
pub struct ContainerConfig {
    /// The container as the pod spec declares it (command, args, ports, resources…).
    pub spec: Container,
    /// The image as pulled.
    pub image: ImageInfo,
    /// Environment, resolved (downward API, config maps, secrets, service links).
    pub env: Vec<(String, String)>,
    /// 0 for the first instance, +1 per restart.
    pub attempt: u32,
    /// Whether this is an init container.
    pub init: bool,
    /// Files of the API-sourced volumes (configMap, secret, downwardAPI, projected)
    /// the container mounts, by volume name; the runtime writes and mounts them.
    pub volume_files: std::collections::BTreeMap<String, Vec<crate::volumes::VolumeFile>>,
}

/// Container lifecycle state as the runtime knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One container instance on the node.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub pod_uid: String,
    /// The container's name in the pod spec.
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub image_id: String,
    pub state: ContainerState,
    pub exit_code: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`… for exited containers.
    pub reason: Option<String>,
    pub message: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

/// Output of a command run in a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A byte source handed to [`PodRuntime::exec_stream`] (the client's stdin).
pub type ExecInput = Box<dyn AsyncRead + Send + Unpin>;
/// A byte sink handed to [`PodRuntime::exec_stream`] (the client's stdout/stderr).
pub type ExecOutput = Box<dyn AsyncWrite + Send + Unpin>;

/// The streams of one interactive exec (`kubectl exec`).
pub struct ExecStreams {
    /// The client's input; `None` when the client did not ask for stdin. EOF on it
    /// means the client closed stdin (the process should then see EOF too).
    pub stdin: Option<ExecInput>,
    /// Where the process's stdout goes (`None`: discard). With `tty`, the terminal's
    /// whole output goes here.
    pub stdout: Option<ExecOutput>,
    /// Where the process's stderr goes (`None`: discard). Always `None` with `tty`.
    pub stderr: Option<ExecOutput>,
    /// Allocate a terminal for the process.
    pub tty: bool,
    /// Terminal size changes from the client (only with `tty`; the first one usually
    /// arrives right after the start). Ignoring them is allowed.
    pub resize: Option<tokio::sync::mpsc::Receiver<TerminalSize>>,
}

/// A terminal size in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The node-side operations the kubelet drives. Implemented by the real runtime
/// adapter (containers, images, network) and by [`FakeRuntime`].
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync {
    /// Runtime version, reported as `containerRuntimeVersion: flotilla://<version>`.
    fn version(&self) -> String;
    /// Create the pod's sandbox if missing (idempotent) and return it.
    async fn ensure_sandbox(&self, pod: &Pod) -> Result<SandboxInfo, RuntimeError>;
    /// Remove the pod's sandbox (after its containers); missing is not an error.
    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError>;
    /// The pod uids that have a sandbox on the node (orphan clean-up).
    async fn list_sandbox_uids(&self) -> Result<Vec<String>, RuntimeError>;
    /// CPU and memory of a container (`/stats/summary`, `kubectl top`).
    async fn container_stats(&self, id: &str)
    -> Result<crate::stats::ContainerStats, RuntimeError>;
    /// Network counters of a pod's interface (None for host-network pods).
    async fn pod_network_stats(
        &self,
        pod_uid: &str,
    ) -> Result<Option<crate::stats::NetworkStats>, RuntimeError>;
    /// The image if present on the node.
    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError>;
    /// Pull an image (registry credentials from the pod's pull secrets, as
    /// `.dockerconfigjson` contents).
    async fn pull_image(
        &self,
        image: &str,
        auth: &[serde_json::Value],
    ) -> Result<ImageInfo, RuntimeError>;
    /// Create (not start) a container in the pod's sandbox; returns its id.
    async fn create_container(
        &self,
        pod: &Pod,
        sandbox: &SandboxInfo,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError>;
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// SIGTERM, then SIGKILL after `grace`; returns when the container is stopped.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Remove a stopped container; missing is not an error.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Containers of one pod (`Some(uid)`) or of all pods.
    async fn list_containers(
        &self,
        pod_uid: Option<&str>,
    ) -> Result<Vec<ContainerInfo>, RuntimeError>;
    /// Run a command in a running container (exec probes).
    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError>;
    /// Path of the CRI-format log file of container `id` (lines
    /// `<RFC3339Nano> stdout|stderr F|P <text>`); rotated files are `<path>.1`
    /// (newest) … `<path>.N` (oldest). The file may not exist yet (no output so far).
    /// `NotFound` for an unknown container.
    fn log_path(&self, id: &str) -> Result<PathBuf, RuntimeError>;
    /// Run `cmd` in running container `id` with streamed I/O (`kubectl exec`);
    /// returns the process's exit code once it has exited. No timeout: it returns
    /// when the process exits. Before returning, all output must have been written to
    /// and flushed into `streams.stdout`/`stderr`, and they must be dropped (the
    /// caller waits for their EOF). `Err` only when the process could not be started
    /// (unknown or stopped container, command not found…): the message reaches the
    /// user.
    async fn exec_stream(
        &self,
        id: &str,
        cmd: &[String],
        streams: ExecStreams,
    ) -> Result<i32, RuntimeError>;
    /// Attach to the stdio of running container `id` (`kubectl attach`, `kubectl run
    /// -i`): its output from now on goes to `streams.stdout`/`stderr` (with a terminal,
    /// all of it to stdout), `streams.stdin` to the container's stdin when it has one
    /// (dropped otherwise), resizes to its terminal. Returns once the container has
    /// exited, or when the client detached (its stdin ended and the container is not
    /// `stdinOnce`); output is flushed and the sinks dropped before returning, as with
    /// [`PodRuntime::exec_stream`]. `Err` when the container is unknown or not running.
    async fn attach(&self, id: &str, streams: ExecStreams) -> Result<(), RuntimeError>;
    /// Connect to TCP `port` on the loopback of pod `pod_uid`'s network namespace
    /// (`kubectl port-forward`); host-network pods connect on the node's loopback.
    /// `NotFound` when the pod has no sandbox; a refused connection is `Other` with
    /// the reason, which reaches the user.
    async fn port_forward(
        &self,
        pod_uid: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, RuntimeError>;
    /// Rewrite the files of the pod's API-sourced volumes (by volume name) in place,
    /// atomically, while its containers run; volumes not set up yet are left alone.
    /// Runtimes without such volumes ignore it.
    async fn update_volume_files(
        &self,
        pod: &Pod,
        files: &std::collections::BTreeMap<String, Vec<crate::volumes::VolumeFile>>,
    ) -> Result<(), RuntimeError> {
        let _ = (pod, files);
        Ok(())
    }
}

/// How fake containers of one image behave.
#[derive(Clone, Debug, Default)]
pub struct FakeBehavior {
    /// Exit this long after start (None: run until stopped).
    pub exit_after: Option<Duration>,
    pub exit_code: i32,
    /// Pulls of this image fail with this message.
    pub pull_error: Option<String>,
    /// Exit code of `exec_sync` in these containers.
    pub exec_exit_code: i32,
}

#[derive(Clone, Debug)]
struct FakeContainer {
    info: ContainerInfo,
    behavior: FakeBehavior,
}

#[derive(Default)]
struct FakeState {
    next: u64,
    sandboxes: HashMap<String, SandboxInfo>,
    images: HashMap<String, ImageInfo>,
    containers: HashMap<String, FakeContainer>,
    behaviors: HashMap<String, FakeBehavior>,
    /// (pod uid, container name) → number of starts.
    starts: HashMap<(String, String), u32>,
    pulls: u32,
    /// (pod uid, container name) → environment of the last created instance.
    envs: HashMap<(String, String), Vec<(String, String)>>,
    stops: Vec<(String, Duration)>,
    log_dir: Option<PathBuf>,
    /// Terminal sizes received by `exec_stream`, in order.
    resizes: Vec<TerminalSize>,
    /// Pod port → address `port_forward` connects to.
    forwards: HashMap<u16, std::net::SocketAddr>,
    /// How long `stop_container` takes (a container honouring its grace period).
    stop_delay: Duration,
    /// (pod uid, volume name) → files, as last written at container creation or by
    /// `update_volume_files`.
    volumes: HashMap<(String, String), Vec<crate::volumes::VolumeFile>>,
}

/// In-memory [`PodRuntime`]: containers "run" until stopped or until their image's
/// [`FakeBehavior::exit_after`] elapses. Images are pulled instantly.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<FakeState>>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A panic while holding the lock only happens in a failing test.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set how containers of `image` behave from now on.
    pub fn set_behavior(&self, image: &str, behavior: FakeBehavior) {
        self.lock().behaviors.insert(image.into(), behavior);
    }

    /// Make [`PodRuntime::stop_container`] take `d` before the container exits.
    pub fn set_stop_delay(&self, d: Duration) {
        self.lock().stop_delay = d;
    }

    /// Make [`PodRuntime::log_path`] answer `<dir>/<container id>.log` (nothing is
    /// written there: tests write the log files themselves).
    pub fn set_log_dir(&self, dir: PathBuf) {
        self.lock().log_dir = Some(dir);
    }

    /// Make [`PodRuntime::port_forward`] to pod port `port` (of any pod with a
    /// sandbox) connect to `target` (a listener the test runs); ports without a
    /// target are refused.
    pub fn set_forward_target(&self, port: u16, target: std::net::SocketAddr) {
        self.lock().forwards.insert(port, target);
    }

    /// Terminal sizes the exec sessions received so far.
    pub fn resizes(&self) -> Vec<TerminalSize> {
        self.lock().resizes.clone()
    }

    /// How many times container `name` of pod `uid` was started.
    pub fn starts(&self, pod_uid: &str, name: &str) -> u32 {
        self.lock()
            .starts
            .get(&(pod_uid.to_string(), name.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Starts of container `name` summed over all pods whose uid is in the map.
    pub fn total_starts(&self, name: &str) -> u32 {
        self.lock()
            .starts
            .iter()
            .filter(|((_, n), _)| n == name)
            .map(|(_, c)| *c)
            .sum()
    }

    /// Environment given to the last instance of container `name` of pod `uid`.
    pub fn env(&self, pod_uid: &str, name: &str) -> Option<Vec<(String, String)>> {
        self.lock()
            .envs
            .get(&(pod_uid.to_string(), name.to_string()))
            .cloned()
    }

    /// The files of API-sourced volume `volume` of pod `uid`, as last written.
    pub fn volume_files(
        &self,
        pod_uid: &str,
        volume: &str,
    ) -> Option<Vec<crate::volumes::VolumeFile>> {
        self.lock()
            .volumes
            .get(&(pod_uid.to_string(), volume.to_string()))
            .cloned()
    }

    /// Number of image pulls performed.
    pub fn pulls(&self) -> u32 {
        self.lock().pulls
    }

    /// Grace periods passed to `stop_container`, by container name.
    pub fn stops(&self) -> Vec<(String, Duration)> {
        self.lock().stops.clone()
    }

    /// Ids of pods with a sandbox.
    pub fn sandboxes(&self) -> Vec<String> {
        self.lock().sandboxes.keys().cloned().collect()
    }

    /// Running containers (like `ctr ps`).
    pub fn running(&self) -> Vec<ContainerInfo> {
        let mut st = self.lock();
        refresh(&mut st);
        st.containers
            .values()
            .filter(|c| c.info.state == ContainerState::Running)
            .map(|c| c.info.clone())
            .collect()
    }
}

fn refresh(st: &mut FakeState) {
    let now = Timestamp::now();
    for c in st.containers.values_mut() {
        if c.info.state != ContainerState::Running {
            continue;
        }
        let (Some(after), Some(started)) = (c.behavior.exit_after, c.info.started_at) else {
            continue;
        };
        let Ok(after) = k8s_openapi::jiff::SignedDuration::try_from(after) else {
            continue;
        };
        let Ok(end) = started.checked_add(after) else {
            continue;
        };
        if end <= now {
            c.info.state = ContainerState::Exited;
            c.info.exit_code = Some(c.behavior.exit_code);
            c.info.reason = Some(if c.behavior.exit_code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            });
            c.info.finished_at = Some(end);
        }
    }
}

#[async_trait::async_trait]
impl PodRuntime for FakeRuntime {
    fn version(&self) -> String {
        "fake-0.1".into()
    }

    async fn update_volume_files(
        &self,
        pod: &Pod,
        files: &std::collections::BTreeMap<String, Vec<crate::volumes::VolumeFile>>,
    ) -> Result<(), RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut st = self.lock();
        for (name, f) in files {
            let key = (uid.clone(), name.clone());
            // Only volumes already set up (by a container's creation), as the real runtime.
            if let Some(v) = st.volumes.get_mut(&key) {
                *v = f.clone();
            }
        }
        Ok(())
    }

    async fn ensure_sandbox(&self, pod: &Pod) -> Result<SandboxInfo, RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut st = self.lock();
        if let Some(s) = st.sandboxes.get(&uid) {
            return Ok(s.clone());
        }
        st.next += 1;
        let n = st.next;
        let ip = IpAddr::V4(Ipv4Addr::new(10, 88, (n / 250) as u8, (n % 250) as u8 + 2));
        let s = SandboxInfo {
            id: format!("sandbox-{n}"),
            pod_ips: vec![ip],
        };
        st.sandboxes.insert(uid, s.clone());
        Ok(s)
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        self.lock().sandboxes.remove(pod_uid);
        Ok(())
    }

    async fn list_sandbox_uids(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self.sandboxes())
    }

    /// Fake containers use 1 ms of CPU per millisecond of running (one full core)
    /// and 1 MiB of memory.
    async fn container_stats(
        &self,
        id: &str,
    ) -> Result<crate::stats::ContainerStats, RuntimeError> {
        let list = self.list_containers(None).await?;
        let c = list
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let ran = c
            .started_at
            .map(|t| {
                Timestamp::now()
                    .duration_since(t)
                    .as_nanos()
                    .clamp(0, i128::from(u64::MAX)) as u64
            })
            .unwrap_or(0);
        Ok(crate::stats::ContainerStats {
            cpu_usage_ns: ran,
            memory_usage_bytes: 1 << 20,
            memory_working_set_bytes: 1 << 20,
        })
    }

    async fn pod_network_stats(
        &self,
        _pod_uid: &str,
    ) -> Result<Option<crate::stats::NetworkStats>, RuntimeError> {
        Ok(None)
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        Ok(self.lock().images.get(image).cloned())
    }

    async fn pull_image(
        &self,
        image: &str,
        _auth: &[serde_json::Value],
    ) -> Result<ImageInfo, RuntimeError> {
        let mut st = self.lock();
        st.pulls += 1;
        if let Some(msg) = st.behaviors.get(image).and_then(|b| b.pull_error.clone()) {
            return Err(RuntimeError::Pull {
                image: image.into(),
                message: msg,
            });
        }
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(image.as_bytes()));
        let info = ImageInfo {
            image: image.into(),
            image_id: format!("fake.local/{image}@sha256:{digest}"),
            size: 1 << 20,
        };
        st.images.insert(image.into(), info.clone());
        Ok(info)
    }

    async fn create_container(
        &self,
        pod: &Pod,
        _sandbox: &SandboxInfo,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let mut st = self.lock();
        st.next += 1;
        let id = format!("{:016x}", st.next);
        let behavior = st
            .behaviors
            .get(&config.image.image)
            .cloned()
            .unwrap_or_default();
        st.envs.insert(
            (
                pod.metadata.uid.clone().unwrap_or_default(),
                config.spec.name.clone(),
            ),
            config.env.clone(),
        );
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        for (name, files) in &config.volume_files {
            st.volumes
                .insert((uid.clone(), name.clone()), files.clone());
        }
        st.containers.insert(
            id.clone(),
            FakeContainer {
                info: ContainerInfo {
                    id: id.clone(),
                    pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                    name: config.spec.name.clone(),
                    attempt: config.attempt,
                    image: config.image.image.clone(),
                    image_id: config.image.image_id.clone(),
                    state: ContainerState::Created,
                    exit_code: None,
                    reason: None,
                    message: None,
                    created_at: Timestamp::now(),
                    started_at: None,
                    finished_at: None,
                },
                behavior,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        c.info.state = ContainerState::Running;
        c.info.started_at = Some(Timestamp::now());
        let key = (c.info.pod_uid.clone(), c.info.name.clone());
        *st.starts.entry(key).or_default() += 1;
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let delay = self.lock().stop_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut st = self.lock();
        refresh(&mut st);
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        let name = c.info.name.clone();
        if c.info.state == ContainerState::Running || c.info.state == ContainerState::Created {
            c.info.state = ContainerState::Exited;
            c.info.exit_code = Some(137);
            c.info.reason = Some("Error".into());
            c.info.finished_at = Some(Timestamp::now());
        }
        st.stops.push((name, grace));
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.lock().containers.remove(id);
        Ok(())
    }

    async fn list_containers(
        &self,
        pod_uid: Option<&str>,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut st = self.lock();
        refresh(&mut st);
        Ok(st
            .containers
            .values()
            .filter(|c| pod_uid.is_none_or(|u| c.info.pod_uid == u))
            .map(|c| c.info.clone())
            .collect())
    }

    async fn exec_sync(
        &self,
        id: &str,
        _cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let mut st = self.lock();
        refresh(&mut st);
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        if c.info.state != ContainerState::Running {
            return Err(RuntimeError::Other(format!(
                "container {id} is not running"
            )));
        }
        Ok(ExecResult {
            exit_code: c.behavior.exec_exit_code,
            ..Default::default()
        })
    }

    fn log_path(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        let st = self.lock();
        if !st.containers.contains_key(id) {
            return Err(RuntimeError::NotFound(id.into()));
        }
        let dir = st
            .log_dir
            .clone()
            .ok_or_else(|| RuntimeError::Other("fake runtime: no log directory set".into()))?;
        Ok(dir.join(format!("{id}.log")))
    }

    /// The fake process writes its command line (joined by spaces, plus a newline)
    /// to stdout, `stderr:` and the command line to stderr, then copies stdin to
    /// stdout until EOF, records the terminal sizes received until then, and exits
    /// with the image's [`FakeBehavior::exec_exit_code`].
    async fn exec_stream(
        &self,
        id: &str,
        cmd: &[String],
        streams: ExecStreams,
    ) -> Result<i32, RuntimeError> {
        let code = {
            let mut st = self.lock();
            refresh(&mut st);
            let c = st
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
            if c.info.state != ContainerState::Running {
                return Err(RuntimeError::Other(format!(
                    "container {id} is not running"
                )));
            }
            c.behavior.exec_exit_code
        };
        let io = |e: std::io::Error| RuntimeError::Other(format!("fake exec i/o: {e}"));
        let line = format!("{}\n", cmd.join(" "));
        let ExecStreams {
            stdin,
            mut stdout,
            mut stderr,
            mut resize,
            ..
        } = streams;
        if let Some(out) = stdout.as_mut() {
            out.write_all(line.as_bytes()).await.map_err(io)?;
            out.flush().await.map_err(io)?;
        }
        if let Some(err) = stderr.as_mut() {
            err.write_all(format!("stderr: {line}").as_bytes())
                .await
                .map_err(io)?;
            err.flush().await.map_err(io)?;
        }
        if let Some(mut input) = stdin {
            let mut buf = [0u8; 4096];
            loop {
                let n = tokio::select! {
                    Some(size) = async { resize.as_mut()?.recv().await } => {
                        self.lock().resizes.push(size);
                        continue;
                    }
                    n = input.read(&mut buf) => n.map_err(io)?,
                };
                if n == 0 {
                    break;
                }
                if let Some(out) = stdout.as_mut() {
                    out.write_all(&buf[..n]).await.map_err(io)?;
                    out.flush().await.map_err(io)?;
                }
            }
        }
        if let Some(r) = resize.as_mut() {
            while let Ok(size) = r.try_recv() {
                self.lock().resizes.push(size);
            }
        }
        Ok(code)
    }

    /// Writes `attached\n` to stdout, then echoes stdin to stdout until it ends (a
    /// container that reads its stdin and prints it); without stdin it returns at once.
    async fn attach(&self, id: &str, streams: ExecStreams) -> Result<(), RuntimeError> {
        {
            let mut st = self.lock();
            refresh(&mut st);
            let c = st
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
            if c.info.state != ContainerState::Running {
                return Err(RuntimeError::Other(format!(
                    "container {id} is not running"
                )));
            }
        }
        let io = |e: std::io::Error| RuntimeError::Other(format!("fake attach i/o: {e}"));
        let ExecStreams {
            stdin,
            mut stdout,
            mut resize,
            ..
        } = streams;
        if let Some(out) = stdout.as_mut() {
            out.write_all(b"attached\n").await.map_err(io)?;
            out.flush().await.map_err(io)?;
        }
        if let Some(mut input) = stdin {
            let mut buf = [0u8; 4096];
            loop {
                let n = tokio::select! {
                    Some(size) = async { resize.as_mut()?.recv().await } => {
                        self.lock().resizes.push(size);
                        continue;
                    }
                    n = input.read(&mut buf) => n.map_err(io)?,
                };
                if n == 0 {
                    break;
                }
                if let Some(out) = stdout.as_mut() {
                    out.write_all(&buf[..n]).await.map_err(io)?;
                    out.flush().await.map_err(io)?;
                }
            }
        }
        Ok(())
    }

    async fn port_forward(
        &self,
        pod_uid: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, RuntimeError> {
        let target = {
            let st = self.lock();
            if !st.sandboxes.contains_key(pod_uid) {
                return Err(RuntimeError::NotFound(format!("sandbox of pod {pod_uid}")));
            }
            st.forwards.get(&port).copied()
        };
        let Some(target) = target else {
            return Err(RuntimeError::Other(format!(
                "failed to connect to localhost:{port} inside the pod: connection refused"
            )));
        };
        tokio::net::TcpStream::connect(target)
            .await
            .map_err(|e| RuntimeError::Other(format!("failed to connect to localhost:{port}: {e}")))
    }
}
