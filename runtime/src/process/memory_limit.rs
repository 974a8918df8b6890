//! Memory limits for runner processes (`[isolation] memory_limit_mb`).
//!
//! In order of preference:
//! - **cgroup v2**: a child group of this process's own cgroup, where its `memory` controller
//!   is enabled for children (`cgroup.subtree_control`): `memory.max`, and `memory.events`'s
//!   `oom_kill` count tells that a SIGKILL was the limit's doing.
//! - **cgroup v1**: a child group in this process's group of the `memory` hierarchy, where it
//!   is writable: `memory.limit_in_bytes`, with `memory.oom_control`'s `oom_kill` count (and
//!   `memory.failcnt`) to tell.
//! - **`RLIMIT_AS`** otherwise: allocations past the limit fail. The plugin then sees `malloc`
//!   return NULL, and what happens next is its own doing; a runner that dies of a signal while
//!   the limit is in force is reported as possibly out of memory, which is all that can be
//!   told.
//!
//! The whole runner (and everything it forks) is in the group, whose directory is removed
//! when the runner is gone. `CALC_MEMORY_LIMIT=rlimit` in the host's environment forces the
//! last mechanism (for testing it where cgroups are available).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// How a runner's memory is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// A cgroup v2 group with `memory.max`.
    CgroupV2,
    /// A cgroup v1 memory group with `memory.limit_in_bytes`.
    CgroupV1,
    /// `RLIMIT_AS` on the runner.
    Rlimit,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::CgroupV2 => "cgroup v2 memory.max",
            Mechanism::CgroupV1 => "cgroup v1 memory.limit_in_bytes",
            Mechanism::Rlimit => "RLIMIT_AS",
        })
    }
}

/// The mechanism a memory limit set now would use (see the module docs), without setting
/// one.
pub fn mechanism() -> Mechanism {
    if forced_rlimit() {
        return Mechanism::Rlimit;
    }
    cgroup_bases()
        .first()
        .map_or(Mechanism::Rlimit, |(mechanism, _)| *mechanism)
}

/// Whether `CALC_MEMORY_LIMIT=rlimit` asks for `RLIMIT_AS` whatever cgroups are available.
fn forced_rlimit() -> bool {
    std::env::var("CALC_MEMORY_LIMIT").is_ok_and(|v| v == "rlimit")
}

/// The directories where runners' cgroups are made (`calc-runner-<pid>` in each): empty
/// where only `RLIMIT_AS` is available.
pub fn cgroup_dirs() -> Vec<PathBuf> {
    cgroup_bases().into_iter().map(|(_, dir)| dir).collect()
}

/// The memory limit of one runner; removes its cgroup when dropped.
#[derive(Debug)]
pub struct MemoryLimit {
    /// The limit, in MiB.
    pub mb: u64,
    /// How the limit is enforced.
    pub mechanism: Mechanism,
    /// The runner's cgroup directory (cgroup mechanisms).
    group: Option<PathBuf>,
}

impl MemoryLimit {
    /// Limits the process `pid` (a runner just started, leading its process group) to `mb`
    /// MiB, with the first mechanism this host may use.
    pub fn apply(pid: u32, mb: u64) -> std::io::Result<MemoryLimit> {
        let bytes = mb.saturating_mul(1 << 20);
        if !forced_rlimit() {
            for (mechanism, base) in cgroup_bases() {
                let group = base.join(format!("calc-runner-{pid}"));
                match make_group(&group, mechanism, bytes, pid) {
                    Ok(()) => {
                        tracing::debug!(pid, mb, %mechanism, "runner memory limit");
                        return Ok(MemoryLimit {
                            mb,
                            mechanism,
                            group: Some(group),
                        });
                    }
                    Err(e) => {
                        let _ = std::fs::remove_dir(&group);
                        tracing::debug!("{}: no memory cgroup: {e}", group.display());
                    }
                }
            }
        }
        super::sys::limit_address_space(pid, bytes)?;
        tracing::debug!(pid, mb, mechanism = %Mechanism::Rlimit, "runner memory limit");
        Ok(MemoryLimit {
            mb,
            mechanism: Mechanism::Rlimit,
            group: None,
        })
    }

    /// Whether the group's limit killed a process (cgroup mechanisms; `false` for rlimit).
    pub fn killed(&self) -> bool {
        let Some(group) = &self.group else {
            return false;
        };
        let count = |file: &str, key: &str| -> u64 {
            std::fs::read_to_string(group.join(file))
                .ok()
                .and_then(|text| {
                    text.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        (k == key).then(|| v.trim().parse().ok())?
                    })
                })
                .unwrap_or(0)
        };
        match self.mechanism {
            Mechanism::CgroupV2 => count("memory.events", "oom_kill") > 0,
            Mechanism::CgroupV1 => count("memory.oom_control", "oom_kill") > 0,
            Mechanism::Rlimit => false,
        }
    }
}

impl Drop for MemoryLimit {
    /// Removes the group (the runner and its processes are gone by now: the connection kills
    /// and reaps them before dropping this).
    fn drop(&mut self) {
        if let Some(group) = &self.group {
            if let Err(e) = std::fs::remove_dir(group) {
                tracing::debug!(
                    "{}: cannot remove the runner's cgroup: {e}",
                    group.display()
                );
            }
        }
    }
}

/// Creates `group`, sets its limit to `bytes` and moves `pid` into it.
fn make_group(group: &Path, mechanism: Mechanism, bytes: u64, pid: u32) -> std::io::Result<()> {
    std::fs::create_dir(group)?;
    let (limit_file, swap_file) = match mechanism {
        Mechanism::CgroupV2 => ("memory.max", Some("memory.swap.max")),
        _ => ("memory.limit_in_bytes", None),
    };
    std::fs::write(group.join(limit_file), bytes.to_string())?;
    if let Some(swap) = swap_file {
        // No swap either, where the controller offers it: the limit is the limit.
        let _ = std::fs::write(group.join(swap), "0");
    }
    std::fs::write(group.join("cgroup.procs"), pid.to_string())
}

/// Where a runner's group may be made: this process's cgroup v2 group when its memory
/// controller is enabled for children, then its cgroup v1 memory group.
fn cgroup_bases() -> Vec<(Mechanism, PathBuf)> {
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    let mut bases = Vec::new();
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let base = Path::new(mount).join(path);
                let enabled = std::fs::read_to_string(base.join("cgroup.subtree_control"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
                if enabled {
                    bases.push((Mechanism::CgroupV2, base));
                    break;
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let base = Path::new("/sys/fs/cgroup/memory").join(path);
            if base.join("memory.limit_in_bytes").is_file() {
                bases.push((Mechanism::CgroupV1, base));
            }
        }
    }
    // v2 first.
    bases.sort_by_key(|(m, _)| *m != Mechanism::CgroupV2);
    bases
}
