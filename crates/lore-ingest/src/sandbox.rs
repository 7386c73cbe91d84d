//! Untrusted files are parsed in a child process, so a file that sends a parser into
//! unbounded recursion (a stack overflow aborts a process; no panic guard can catch it), an
//! endless loop or a memory bomb fails alone, with a reason, and never takes down the server
//! or the ingest run that met it.
//!
//! The child is a Lore binary run as `<program> __lore-parse <request>`: every binary that
//! ingests (`lore`, `lore-bench`) calls [`run_child_if_requested`] first thing in `main`. The
//! file's bytes go to its standard input; it answers on standard output with one frame
//! ([`FRAME_MAGIC`], then JSON). Before it reads anything the child limits its own address
//! space and CPU time and turns core dumps off; the parent kills it past the wall-clock limit
//! or when the job is cancelled, and reads at most the output limit.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lore_core::config::{ParserConfig, ParserIsolation};
use serde::{Deserialize, Serialize};

use crate::error::{FileErrorKind, IngestError};
use crate::loaders::{self, Format, Limits, LoadedDocument};

/// The first argument that turns a Lore binary into a parser child.
pub const CHILD_ARG: &str = "__lore-parse";
/// Starts the child's answer; anything else on its standard output is not an answer.
const FRAME_MAGIC: &[u8] = b"LORE-PARSE/1\n";
/// How often the parent looks at the child while it waits.
const POLL: Duration = Duration::from_millis(5);
/// The end of the child's standard error kept for the error message.
const STDERR_TAIL: usize = 4096;

/// What the parent asks of the child (its second argument, as JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    format: Format,
    limits: Limits,
    memory_bytes: u64,
    cpu_secs: u64,
    max_output_bytes: u64,
}

/// Parses files as configured: in a child process (the default) or on the calling thread.
#[derive(Debug, Clone)]
pub struct Parser {
    config: ParserConfig,
    limits: Limits,
    /// The child program (process isolation only).
    program: Option<PathBuf>,
}

impl Parser {
    /// Resolves the child program (`ingest.parser.program`, else the running executable)
    /// and checks that it exists.
    pub fn new(config: &ParserConfig) -> Result<Self, IngestError> {
        let program = match config.isolation {
            ParserIsolation::InProcess => None,
            ParserIsolation::Process => {
                let program = match &config.program {
                    Some(program) => program.clone(),
                    None => std::env::current_exe()
                        .map_err(|e| IngestError::Other(format!("cannot find the running executable: {e}")))?,
                };
                if !program.is_file() {
                    return Err(IngestError::Other(format!(
                        "ingest.parser.program {} is not a file (it must be a Lore binary)",
                        program.display()
                    )));
                }
                Some(program)
            }
        };
        Ok(Parser { config: config.clone(), limits: Limits::from_config(config), program })
    }

    /// Parses one file (its extension picks the loader). `cancel`, when set, kills the child.
    pub fn parse(
        &self,
        path: &Path,
        bytes: &[u8],
        cancel: Option<&AtomicBool>,
    ) -> Result<LoadedDocument, FileErrorKind> {
        let format = loaders::format_of(path)?;
        if bytes.is_empty() {
            return Err(FileErrorKind::Empty);
        }
        let loaded = match &self.program {
            None => loaders::load_format(format, bytes, &self.limits)?,
            Some(program) => self.parse_in_child(program, format, bytes, cancel)?,
        };
        if text_bytes(&loaded) > self.max_output_bytes() {
            return Err(FileErrorKind::TooMuchText { limit_mib: self.config.max_output_mib });
        }
        Ok(loaded)
    }

    fn max_output_bytes(&self) -> u64 {
        self.config.max_output_mib.saturating_mul(1024 * 1024)
    }

    fn parse_in_child(
        &self,
        program: &Path,
        format: Format,
        bytes: &[u8],
        cancel: Option<&AtomicBool>,
    ) -> Result<LoadedDocument, FileErrorKind> {
        let timeout = Duration::from_secs_f64(self.config.timeout_secs);
        let request = Request {
            format,
            limits: self.limits,
            memory_bytes: self.config.memory_mib.saturating_mul(1024 * 1024),
            cpu_secs: timeout.as_secs() + 1,
            max_output_bytes: self.max_output_bytes(),
        };
        let request = serde_json::to_string(&request).expect("request serializes");
        let mut child = Command::new(program)
            .arg(CHILD_ARG)
            .arg(&request)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| FileErrorKind::ParserUnavailable(format!("{}: {e}", program.display())))?;
        let (mut stdin, stdout, stderr) = (
            child.stdin.take().expect("piped"),
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        // The answer may hold the document's text plus JSON escaping; past that it is not one.
        let read_limit = self.max_output_bytes().saturating_mul(2).saturating_add(1024 * 1024);
        let started = Instant::now();
        let (ended, output, stderr) = std::thread::scope(|scope| {
            scope.spawn(move || {
                // A child that stops reading (it failed early) closes the pipe: not our error.
                let _ = stdin.write_all(bytes);
            });
            let output = scope.spawn(move || {
                let mut output = Vec::new();
                let _ = stdout.take(read_limit + 1).read_to_end(&mut output);
                output
            });
            let stderr = scope.spawn(move || {
                let mut text = Vec::new();
                let _ = stderr.take(1024 * 1024).read_to_end(&mut text);
                text
            });
            let ended = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) => {}
                    Err(e) => break Err(FileErrorKind::ParserUnavailable(e.to_string())),
                }
                let stop = if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                    Some(FileErrorKind::Cancelled)
                } else if started.elapsed() > timeout {
                    Some(FileErrorKind::ParseTimeout { secs: timeout.as_secs_f64().ceil() as u64 })
                } else {
                    None
                };
                if let Some(reason) = stop {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(reason);
                }
                std::thread::sleep(POLL);
            };
            if ended.is_err() {
                let _ = child.kill();
            }
            (ended, output.join().unwrap_or_default(), stderr.join().unwrap_or_default())
        });
        let status = ended?;
        if output.len() as u64 > read_limit {
            return Err(FileErrorKind::TooMuchText { limit_mib: self.config.max_output_mib });
        }
        match output.strip_prefix(FRAME_MAGIC) {
            Some(json) if status.success() => serde_json::from_slice::<Result<LoadedDocument, FileErrorKind>>(json)
                .map_err(|e| FileErrorKind::ParserCrashed(format!("unreadable answer from the parser: {e}")))?,
            _ => Err(FileErrorKind::ParserCrashed(describe_exit(status, &stderr))),
        }
    }
}

fn text_bytes(loaded: &LoadedDocument) -> u64 {
    loaded.sections.iter().map(|s| s.text.len() as u64).sum()
}

/// How the child ended, in words: its signal or exit code and the last line it wrote.
fn describe_exit(status: std::process::ExitStatus, stderr: &[u8]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.signal(), status.code()) {
        (Some(6), _) => "aborted (stack overflow or out of memory)".to_owned(),
        (Some(9), _) => "killed (CPU time limit)".to_owned(),
        (Some(11), _) => "segmentation fault".to_owned(),
        (Some(signal), _) => format!("killed by signal {signal}"),
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "ended".to_owned(),
    };
    let tail = &stderr[stderr.len().saturating_sub(STDERR_TAIL)..];
    let last = String::from_utf8_lossy(tail)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("note:"))
        .map(|l| l.chars().take(200).collect::<String>());
    match last {
        Some(line) => format!("{how}: {line}"),
        None => how,
    }
}

/// Runs the parser child when this process was started as one (`<binary> __lore-parse …`);
/// returns its exit code, or `None` for an ordinary start. Call it first thing in `main`,
/// before any runtime or thread starts.
pub fn run_child_if_requested() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != CHILD_ARG {
        return None;
    }
    let request = args.next().and_then(|a| a.into_string().ok()).unwrap_or_default();
    Some(match serde_json::from_str::<Request>(&request) {
        Ok(request) => child(&request),
        Err(e) => {
            eprintln!("{CHILD_ARG}: bad request: {e}");
            ExitCode::from(2)
        }
    })
}

fn child(request: &Request) -> ExitCode {
    use nix::sys::resource::{Resource, setrlimit};
    // The limits come first: nothing of the file has been read yet.
    let limits = [
        (Resource::RLIMIT_AS, request.memory_bytes),
        (Resource::RLIMIT_CPU, request.cpu_secs),
        (Resource::RLIMIT_CORE, 0),
    ];
    for (resource, limit) in limits {
        if let Err(e) = setrlimit(resource, limit, limit) {
            eprintln!("{CHILD_ARG}: cannot set {resource:?}: {e}");
            return ExitCode::from(3);
        }
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("{CHILD_ARG}: reading the file: {e}");
        return ExitCode::from(4);
    }
    let mut result = loaders::load_format(request.format, &bytes, &request.limits);
    if let Ok(loaded) = &result
        && text_bytes(loaded) > request.max_output_bytes
    {
        result = Err(FileErrorKind::TooMuchText { limit_mib: request.max_output_bytes.div_ceil(1024 * 1024) });
    }
    drop(bytes);
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(FRAME_MAGIC)
        .and_then(|()| serde_json::to_writer(&mut out, &result).map_err(std::io::Error::other))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{CHILD_ARG}: writing the answer: {e}");
            ExitCode::from(5)
        }
    }
}
