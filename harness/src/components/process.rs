//! Supervised child processes: each runs in its own process group with its output captured to
//! a log file, is reaped the moment it exits (a thread per child waits on it, so no zombie is
//! left even where PID 1 does not reap), and is torn down (TERM, then KILL) on drop, on Ctrl-C
//! and on failure.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use crate::components::ComponentError;

/// Process groups still alive; the signal handler kills them so Ctrl-C leaves no orphans.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static HANDLER: Once = Once::new();
/// Set once the signal handler tears everything down: deaths after that are ours, not news.
static SHUTTING_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs a SIGINT/SIGTERM handler that tears down every supervised process group and exits
/// with 130. Safe to call more than once.
pub fn install_signal_cleanup() {
    HANDLER.call_once(|| {
        let result = ctrlc::set_handler(|| {
            eprintln!("\ninterrupted: stopping the stack");
            kill_all_groups();
            let actions: Vec<(String, InterruptAction)> = INTERRUPT_ACTIONS
                .lock()
                .map(|mut a| std::mem::take(&mut *a))
                .unwrap_or_default();
            // Newest first: what was disrupted last is undone before the cluster it ran on goes.
            for (what, action) in actions.into_iter().rev() {
                eprintln!("interrupted: {what}");
                action();
            }
            std::process::exit(130);
        });
        if let Err(error) = result {
            tracing::warn!(%error, "could not install the Ctrl-C handler; interrupting may leave processes behind");
        }
    });
}

type InterruptAction = Box<dyn FnOnce() + Send>;

/// Cleanups that are not processes of ours (a kind cluster), run on Ctrl-C after the process
/// groups are stopped.
static INTERRUPT_ACTIONS: std::sync::Mutex<Vec<(String, InterruptAction)>> =
    std::sync::Mutex::new(Vec::new());

/// Runs `action` if the process is interrupted before [`forget_on_interrupt`] with `what`.
pub fn on_interrupt(what: &str, action: impl FnOnce() + Send + 'static) {
    install_signal_cleanup();
    if let Ok(mut actions) = INTERRUPT_ACTIONS.lock() {
        actions.push((what.to_string(), Box::new(action)));
    }
}

/// Drops the interrupt cleanup registered as `what` (its owner cleaned up itself).
pub fn forget_on_interrupt(what: &str) {
    if let Ok(mut actions) = INTERRUPT_ACTIONS.lock() {
        actions.retain(|(w, _)| w != what);
    }
}

/// Kills every live supervised process group (TERM, grace period, KILL) and waits until their
/// reaper threads have collected them, so the caller can exit without leaving zombies.
pub fn kill_all_groups() {
    SHUTTING_DOWN.store(true, std::sync::atomic::Ordering::SeqCst);
    let groups: Vec<i32> = LIVE_GROUPS
        .lock()
        .map(|g| g.iter().copied().collect())
        .unwrap_or_default();
    for &pgid in &groups {
        signal_group(pgid, libc::SIGTERM);
        signal_group(pgid, libc::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && groups.iter().any(|&g| group_alive(g)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pgid in &groups {
        signal_group(pgid, libc::SIGKILL);
    }
    // A killed leader stays a zombie (and its group "alive") until its reaper thread waits on it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && groups.iter().any(|&g| group_alive(g)) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group; no memory is touched.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only probes for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// How to launch one component.
#[derive(Debug, Clone)]
pub struct Launch {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub log_path: PathBuf,
    /// The signals that freeze and thaw it: SIGSTOP and SIGCONT for a process; a container's
    /// shim pauses and unpauses its container on others (see [`super::container`]).
    pub pause_signals: (i32, i32),
}

impl Launch {
    pub fn new(name: &'static str, program: impl Into<PathBuf>, log_path: PathBuf) -> Self {
        Self {
            name,
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            log_path,
            pause_signals: (libc::SIGSTOP, libc::SIGCONT),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
}

/// A child's exit status, set by the thread that waits on it.
#[derive(Debug, Default)]
struct Exit {
    status: Mutex<Option<ExitStatus>>,
    changed: Condvar,
}

impl Exit {
    fn get(&self) -> Option<ExitStatus> {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `timeout` for the child to exit.
    fn wait(&self, timeout: Duration) -> Option<ExitStatus> {
        let guard = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |status| status.is_none())
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// How long an exit waits for the child's last output to reach its log: a grandchild that
/// keeps the output open must not hold back the news that the child died.
const LAST_OUTPUT: Duration = Duration::from_secs(2);

/// Copies a child's output into its log line by line, without the values of credentials that
/// travel in URLs (authorization codes, `state`, tokens in query strings): oauth2-proxy logs
/// every request URI, the OIDC callback's code included. `done` is dropped at end of output.
fn pump_output(
    name: &'static str,
    output: impl Read + Send + 'static,
    mut log: File,
    done: std::sync::mpsc::Sender<()>,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("log-{name}"))
        .spawn(move || {
            use std::io::{BufRead as _, Write as _};
            let mut output = std::io::BufReader::new(output);
            let mut line = Vec::new();
            while output.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line);
                let scrubbed = crate::redact::without_url_credentials(&text);
                if log.write_all(scrubbed.as_bytes()).is_err() {
                    break;
                }
                line.clear();
            }
            drop(done);
        });
    if let Err(error) = spawned {
        tracing::warn!(component = name, %error, "could not start the log thread");
    }
}

/// The thread that owns the child and reaps it as soon as it exits, once its output is in the
/// log (or [`LAST_OUTPUT`] has passed).
fn reap_in_background(
    name: &'static str,
    mut child: Child,
    exit: Arc<Exit>,
    output_done: std::sync::mpsc::Receiver<()>,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("reap-{name}"))
        .spawn({
            let exit = exit.clone();
            move || {
                let status = child.wait();
                // Every sender is dropped at end of output: then this returns Disconnected.
                let _ = output_done.recv_timeout(LAST_OUTPUT);
                let mut slot = exit.status.lock().unwrap_or_else(|p| p.into_inner());
                // wait() only fails if the child was already reaped; record a failure either way.
                *slot = Some(
                    status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(-1)),
                );
                exit.changed.notify_all();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(component = name, %error, "could not start the reaper thread");
    }
}

/// A running component. Dropping it stops the whole process group.
#[derive(Debug)]
pub struct Supervised {
    name: &'static str,
    pid: u32,
    exit: Arc<Exit>,
    pgid: i32,
    log_path: PathBuf,
    /// Where this start's output begins in the (appended) log.
    log_start: u64,
    stopped: bool,
    pause_signals: (i32, i32),
}

impl Supervised {
    pub fn spawn(launch: &Launch) -> Result<Self, ComponentError> {
        // Appended to, so a restarted component's earlier output is kept.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&launch.log_path)
            .map_err(|source| ComponentError::Io {
                what: format!("open log file {}", launch.log_path.display()),
                source,
            })?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log.try_clone().map_err(|source| ComponentError::Io {
            what: "duplicate log handle".into(),
            source,
        })?;
        let (output_sender, output_done) = std::sync::mpsc::channel();
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = &launch.cwd {
            command.current_dir(dir);
        }
        // SAFETY: prctl is async-signal-safe; it makes the kernel kill the child if we die
        // without running our cleanup (e.g. SIGKILL).
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| ComponentError::Spawn {
            component: launch.name,
            program: launch.program.clone(),
            source,
        })?;
        if let Some(stdout) = child.stdout.take() {
            pump_output(launch.name, stdout, log, output_sender.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            pump_output(launch.name, stderr, log_err, output_sender);
        }
        let pid = child.id();
        let pgid = pid as i32;
        if let Ok(mut groups) = LIVE_GROUPS.lock() {
            groups.insert(pgid);
        }
        let exit = Arc::new(Exit::default());
        reap_in_background(launch.name, child, exit.clone(), output_done);
        tracing::debug!(component = launch.name, pid, "started");
        Ok(Self {
            name: launch.name,
            pid,
            exit,
            pgid,
            log_path: launch.log_path.clone(),
            log_start,
            stopped: false,
            pause_signals: launch.pause_signals,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(status)` when the process has already exited (and been reaped).
    pub fn exited(&self) -> Option<ExitStatus> {
        self.exit.get()
    }

    /// Whether the process exited on its own, rather than being stopped by us.
    pub fn died(&self) -> Option<ExitStatus> {
        if self.stopped || SHUTTING_DOWN.load(std::sync::atomic::Ordering::SeqCst) {
            None
        } else {
            self.exited()
        }
    }

    /// Everything this start wrote to the log (its last MiB), not an earlier start's output.
    pub fn log_since_start(&self) -> String {
        let Ok(mut file) = File::open(&self.log_path) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = self.log_start.max(len.saturating_sub(1024 * 1024));
        if file.seek(SeekFrom::Start(start)).is_err() {
            return String::new();
        }
        let mut buf = Vec::new();
        let _ = file.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The last `lines` lines of the captured log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// Freezes the process group (SIGSTOP): it keeps its sockets and answers nothing, as a
    /// hung service does.
    pub fn pause(&self) {
        signal_group(self.pgid, self.pause_signals.0);
    }

    /// Lets a paused process group run again (SIGCONT).
    pub fn resume(&self) {
        signal_group(self.pgid, self.pause_signals.1);
    }

    /// Stops the process group: TERM, up to `grace`, then KILL. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let started = Instant::now();
        signal_group(self.pgid, libc::SIGTERM);
        // A paused group would hold TERM until the grace period ends.
        signal_group(self.pgid, self.pause_signals.1);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && group_alive(self.pgid) {
            self.exit.wait(Duration::from_millis(25));
        }
        signal_group(self.pgid, libc::SIGKILL);
        if self.exit.wait(Duration::from_secs(5)).is_none() {
            tracing::warn!(
                component = self.name,
                pid = self.pid,
                "did not exit after SIGKILL"
            );
        }
        if let Ok(mut groups) = LIVE_GROUPS.lock() {
            groups.remove(&self.pgid);
        }
        tracing::debug!(
            component = self.name,
            after_ms = started.elapsed().as_millis() as u64,
            "stopped"
        );
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Reads the last `lines` lines of a file (at most the last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_reaches_the_log_without_url_credentials_before_the_exit_is_known() {
        let dir = std::env::temp_dir().join(format!("meshauth-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("callback.log");
        let launch = Launch::new("callback", "/bin/sh", log.clone()).args([
            "-c",
            "echo 'GET /oauth2/callback?state=s3cr3t-state&code=0a1b-2c3d HTTP/1.1 302'; \
             echo 'to stderr' >&2; exit 3",
        ]);
        let process = Supervised::spawn(&launch).unwrap();
        let status = process.exit.wait(Duration::from_secs(10)).expect("exited");
        assert_eq!(status.code(), Some(3));
        // The exit is recorded only once the output is in the log.
        let text = process.log_since_start();
        assert!(
            text.contains("/oauth2/callback?state=[redacted]&code=[redacted] HTTP/1.1 302"),
            "{text}"
        );
        assert!(text.contains("to stderr"), "{text}");
        assert!(!text.contains("s3cr3t") && !text.contains("0a1b"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
