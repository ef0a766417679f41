//! One long-lived agent process: spawn it, write lines to its stdin, read bounded lines
//! from its stdout ([`LineReader`], `tokio_util`'s `LinesCodec`), keep the tail of its
//! stderr, kill it (and whatever it started).

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Bytes of stderr kept for error messages.
pub const STDERR_TAIL_BYTES: usize = 2048;

/// Why a stdout line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("the agent process printed a line longer than {0} bytes")]
    TooLong(usize),
    #[error("the agent process printed a line that is not UTF-8")]
    NotUtf8,
    #[error("reading the agent process's stdout: {0}")]
    Io(#[from] std::io::Error),
}

/// Bounded lines read from a byte stream (an agent process's stdout): `\n`-terminated, one
/// trailing `\r` dropped, UTF-8, at most a given number of bytes; a last line without its
/// `\n` counts.
pub struct LineReader<R> {
    /// The start of a line whose end has not arrived yet stays in the frame's buffer, so
    /// [`LineReader::read_line`] can be dropped mid-line without losing bytes.
    frames: FramedRead<R, LinesCodec>,
    /// The line limit `frames`' codec was built with.
    max_line: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(reader: R) -> LineReader<R> {
        LineReader {
            frames: FramedRead::new(reader, LinesCodec::new_with_max_length(usize::MAX)),
            max_line: usize::MAX,
        }
    }

    /// Reads one line (without its `\n`) of at most `max` bytes; `None` at end of output.
    /// Cancel-safe: a partly read line is kept for the next call.
    pub async fn read_line(&mut self, max: usize) -> Result<Option<String>, LineError> {
        if max != self.max_line {
            // Only the limit changes: bytes already read stay in the frame's buffer.
            *self.frames.decoder_mut() = LinesCodec::new_with_max_length(max);
            self.max_line = max;
        }
        match self.frames.next().await {
            None => Ok(None),
            Some(Ok(line)) => Ok(Some(line)),
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => Err(LineError::TooLong(max)),
            Some(Err(LinesCodecError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(LineError::NotUtf8)
            }
            Some(Err(LinesCodecError::Io(e))) => Err(LineError::Io(e)),
        }
    }
}

pub struct AgentProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: LineReader<ChildStdout>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_reader: JoinHandle<()>,
    pid: Option<u32>,
}

/// Variables an agent process gets from the engine's environment (besides the names of
/// `BINDU_HANDLER_ENV`): where programs and files are, the locale and time zone, the
/// terminal, and a Python virtual environment. A name ending in `*` is a prefix. Nothing else
/// passes: the engine's secrets (database and Redis URLs, API keys, tokens) stay with it.
pub const DEFAULT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "TERM",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONUNBUFFERED",
    "NODE_PATH",
    "SYSTEMROOT",
];

fn allowed(name: &std::ffi::OsStr, names: &[&str]) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    names.iter().any(|n| match n.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => *n == name,
    })
}

/// The variables of `vars` an agent process may see: [`DEFAULT_ENV`] and `extra`.
pub fn allowed_env(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    extra: &[String],
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let names: Vec<&str> = DEFAULT_ENV
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect();
    vars.into_iter()
        .filter(|(name, _)| allowed(name, &names))
        .collect()
}

impl AgentProcess {
    /// Starts `argv` in its own process group, with piped stdin, stdout and stderr, and
    /// exactly the environment `env` (nothing is inherited).
    pub fn spawn(
        argv: &[String],
        env: &[(std::ffi::OsString, std::ffi::OsString)],
    ) -> std::io::Result<AgentProcess> {
        let (program, args) = argv.split_first().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "the command is empty")
        })?;
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            // Unreachable: all three were configured as pipes just above.
            return Err(std::io::Error::other("the agent process has no pipes"));
        };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_BYTES)));
        let stderr_reader = {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match stderr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                            tail.extend(&buf[..n]);
                            let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                            tail.drain(..excess);
                        }
                    }
                }
            })
        };
        Ok(AgentProcess {
            child,
            stdin,
            stdout: LineReader::new(stdout),
            stderr: tail,
            stderr_reader,
            pid,
        })
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Writes one JSON line to the process's stdin.
    pub async fn send(&mut self, line: &impl Serialize) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(line)?;
        bytes.push(b'\n');
        self.stdin.write_all(&bytes).await?;
        self.stdin.flush().await
    }

    /// Reads one line (without its `\n`) of at most `max` bytes; `None` at end of output.
    /// Cancel-safe: a partly read line is kept for the next call.
    pub async fn read_line(&mut self, max: usize) -> Result<Option<String>, LineError> {
        self.stdout.read_line(max).await
    }

    /// Forgets the stderr seen so far (each task's failure quotes only its own).
    pub fn clear_stderr(&self) {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The last [`STDERR_TAIL_BYTES`] of stderr, trimmed, lossily decoded.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let bytes: Vec<u8> = tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// Waits (bounded) for the process to exit and its stderr to be read to the end.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut self.stderr_reader).await;
        status
    }

    /// Kills the process and every process in its group.
    pub fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            // Never signal group 1 (that would mean every process we may signal). The group
            // may outlive its leader (a script's children); its id is not reused while it
            // exists.
            if pid > 1 {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
            }
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        self.stderr_reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> AgentProcess {
        let env = allowed_env(std::env::vars_os(), &[]);
        AgentProcess::spawn(&["sh".into(), "-c".into(), script.into()], &env).expect("sh")
    }

    #[test]
    fn only_allowed_variables_reach_the_agent() {
        let vars = [
            ("PATH", "/bin"),
            ("LC_TIME", "C"),
            ("DATABASE_URL", "postgres://u:pw@h/db"),
            ("OPENAI_API_KEY", "sk-x"),
            ("MY_AGENT_SETTING", "1"),
            ("MY_AGENT_SETTING_2", "2"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let names = |extra: &[String]| -> Vec<String> {
            allowed_env(vars.clone(), extra)
                .into_iter()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(&[]), ["PATH", "LC_TIME"]);
        assert_eq!(
            names(&["MY_AGENT_SETTING".into()]),
            ["PATH", "LC_TIME", "MY_AGENT_SETTING"]
        );
        assert_eq!(
            names(&["MY_AGENT_*".into()]),
            ["PATH", "LC_TIME", "MY_AGENT_SETTING", "MY_AGENT_SETTING_2"]
        );
    }

    #[tokio::test]
    async fn the_process_sees_only_the_environment_it_is_given() {
        let env = vec![
            ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
            ("ONLY_THIS".into(), "yes".into()),
        ];
        let mut p = AgentProcess::spawn(
            &[
                "sh".into(),
                "-c".into(),
                "env | sort | tr '\\n' ' '; echo".into(),
            ],
            &env,
        )
        .expect("sh");
        let line = tokio::time::timeout(Duration::from_secs(10), p.read_line(100_000))
            .await
            .expect("a line in time")
            .expect("a line");
        let line = format!("{line:?}");
        assert!(line.contains("ONLY_THIS=yes"), "{line}");
        assert!(!line.contains("HOME="), "HOME was not given: {line}");
    }

    #[tokio::test]
    async fn a_read_dropped_mid_line_loses_nothing() {
        let mut p = sh("printf 'ab'; sleep 1; printf 'c\\n'; printf 'last'");
        // Give up while only "ab" has arrived (the read is dropped mid-line)…
        let first = tokio::time::timeout(Duration::from_millis(100), p.read_line(100)).await;
        assert!(first.is_err(), "the line is not complete yet");
        // …and the next read still returns the whole line.
        let line = tokio::time::timeout(Duration::from_secs(10), p.read_line(100))
            .await
            .expect("in time")
            .expect("a line");
        assert_eq!(line.as_deref(), Some("abc"));
        // A last line without a newline counts; then the end of output.
        assert_eq!(p.read_line(100).await.expect("ok").as_deref(), Some("last"));
        assert_eq!(p.read_line(100).await.expect("ok"), None);
    }

    #[tokio::test]
    async fn long_lines_and_stderr_are_bounded() {
        let mut p = sh(
            "head -c 5000 /dev/zero | tr '\\0' x; echo; head -c 5000 /dev/zero | tr '\\0' e >&2",
        );
        assert!(matches!(
            p.read_line(1000).await,
            Err(LineError::TooLong(1000))
        ));
        let _ = p.wait_exit(Duration::from_secs(10)).await;
        let tail = p.stderr_tail();
        assert_eq!(tail.len(), STDERR_TAIL_BYTES);
        assert!(tail.bytes().all(|b| b == b'e'));
    }
}
