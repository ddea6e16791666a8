//! What the checks read and run, injectable for tests: files beneath the root (`--root`,
//! prepared trees) and the host's tools (`rpm`, `dpkg-query`, `systemctl`) looked up in a
//! list of directories (`--tools-path`, stand-ins in tests), each run bounded in time with a
//! clean environment and its output capped.

use anyhow::{Context, Result};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::Root;

/// Largest file or tool output a check reads (`/proc/cpuinfo` of a big host is ~1 MiB).
const MAX_READ: u64 = 4 << 20;
/// A tool that has not answered by then is killed; the check says so.
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// The machine as the checks see it.
#[derive(Debug, Clone)]
pub struct Probe {
    pub root: Root,
    pub tools: Vec<PathBuf>,
}

/// What a tool said: its exit code (`None`: killed) and stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl Probe {
    /// `tools`: a `PATH`-style list.
    pub fn new(root: &Root, tools: &str) -> Probe {
        Probe {
            root: root.clone(),
            tools: std::env::split_paths(tools).collect(),
        }
    }

    /// An in-root file as text (never through a symlink on the way), `None` when absent.
    pub fn read(&self, path: &str) -> Result<Option<String>> {
        self.root.fs().read_text(Path::new(path), MAX_READ)
    }

    /// Whether an in-root path exists (a device node, a directory).
    pub fn exists(&self, path: &str) -> bool {
        self.root.join(path).exists()
    }

    /// The in-root directory's entry names, sorted; empty when it is missing.
    pub fn list(&self, path: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .root
            .fs()
            .list(Path::new(path))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// The first executable `name` in the tools path.
    pub fn tool(&self, name: &str) -> Option<PathBuf> {
        self.tools.iter().map(|d| d.join(name)).find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    }

    /// Run a tool with `args`: no stdin, `LC_ALL=C`, `PATH` = the tools path; killed after
    /// [`TOOL_TIMEOUT`].
    pub fn run(&self, tool: &Path, args: &[&str]) -> Result<Ran> {
        let path = std::env::join_paths(&self.tools).unwrap_or_default();
        let mut child = Command::new(tool)
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("running {}", tool.display()))?;
        let out = child.stdout.take().context("a piped stdout")?;
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = out.take(MAX_READ).read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let code = wait_bounded(&mut child, TOOL_TIMEOUT)?;
        let stdout = reader.join().unwrap_or_default();
        Ok(Ran { code, stdout })
    }
}

/// The exit code, or `None` after killing a child that outlived `limit`.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> Result<Option<i32>> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(st) = child.try_wait()? {
            return Ok(st.code());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(None)
}
