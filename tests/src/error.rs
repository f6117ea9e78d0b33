//! Why a piece of test infrastructure could not be set up.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("io error while {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {secs}s{log}")]
    Timeout {
        what: String,
        secs: u64,
        log: LogTail,
    },
    #[error("{what} exited early ({status}){log}")]
    Exited {
        what: String,
        status: String,
        log: LogTail,
    },
    #[error("command `{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("S3 {op} failed: {message}")]
    S3 { op: String, message: String },
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Setup(String),
}

impl HarnessError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
        let what = what.into();
        move |source| HarnessError::Io { what, source }
    }
}

/// The last lines of a log file, rendered into error messages so a failed start explains itself.
#[derive(Debug, Default)]
pub struct LogTail(pub Option<(PathBuf, String)>);

impl LogTail {
    pub fn of(path: &std::path::Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        LogTail(Some((path.to_path_buf(), tail)))
    }
}

impl std::fmt::Display for LogTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some((path, tail)) => write!(f, "\n--- {} (tail) ---\n{tail}\n---", path.display()),
            None => Ok(()),
        }
    }
}
