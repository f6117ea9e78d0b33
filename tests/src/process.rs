//! Child processes that cannot outlive the test: killed on drop, and (via PR_SET_PDEATHSIG)
//! when the thread that spawned them dies, so a crashed or killed test run leaves no orphans.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, LogTail};
use crate::Result;

/// `$KUBEFRONT_CACHE`, default `~/.cache/kubefront`: where the build scripts put binaries.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KUBEFRONT_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/kubefront")
}

/// Finds a tool: explicit env override, then `$KUBEFRONT_CACHE/bin/NAME`, then `PATH`.
pub fn find_binary(env_override: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_override).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let cached = cache_dir().join("bin").join(name);
    if is_executable(&cached) {
        return Some(cached);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A loopback port that was free a moment ago. Only for servers that cannot bind port 0
/// and report it; callers retry on a lost race.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("probing a free port"))?;
    let port = l
        .local_addr()
        .map_err(HarnessError::io("probing a free port"))?
        .port();
    Ok(port)
}

/// A running child process with its output in a log file.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout+stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<ChildGuard> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(HarnessError::io(format!("opening {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(HarnessError::io("duplicating a log handle"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(HarnessError::io(format!("starting {name} ({cmd:?})")))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_tail(&self) -> LogTail {
        LogTail::of(&self.log)
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// An error describing an early exit, if the process is gone.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.try_wait() {
            Some(status) => Err(HarnessError::Exited {
                what: self.name.clone(),
                status: status.to_string(),
                log: self.log_tail(),
            }),
            None => Ok(()),
        }
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process and waits for it (ports are free afterwards).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns a process meant to live as long as the whole test binary: from a parked thread, so the
/// parent-death signal fires when the test process ends, not when the first test's thread does.
pub fn spawn_long_lived(name: &str, cmd: Command, log: &Path) -> Result<ChildGuard> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = name.to_string();
    let log = log.to_path_buf();
    std::thread::Builder::new()
        .name(format!("keeper-{name}"))
        .spawn(move || {
            let _ = tx.send(ChildGuard::spawn(&name, cmd, &log));
            loop {
                std::thread::park();
            }
        })
        .map_err(HarnessError::io("spawning a keeper thread"))?;
    rx.recv()
        .map_err(|_| HarnessError::Setup("keeper thread died".into()))?
}

/// Runs a short command to completion, failing with its output when it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let rendered = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(HarnessError::io(format!("running {rendered}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(HarnessError::Command {
            command: rendered,
            status: out.status.to_string(),
            output: text,
        })
    }
}

/// Blocking `GET path` over plain HTTP/1.1 returning the status code; for readiness probes
/// that run before any async runtime exists.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Whether something accepts TCP connections on `addr`.
pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Polls `ready` every 50 ms until it returns true, the child dies, or `timeout` passes.
pub fn wait_until(
    what: &str,
    child: &mut ChildGuard,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        child.check_alive()?;
        if Instant::now() > deadline {
            return Err(HarnessError::Timeout {
                what: what.to_string(),
                secs: timeout.as_secs(),
                log: child.log_tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Resident set size of a process in bytes (from /proc/PID/status VmRSS).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
