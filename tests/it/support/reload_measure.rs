//! Hot-reload measurements, shared by `tests/it/reload.rs` (quick mode, with the bounds)
//! and the `reload_bench` example (1000 cycles, printed table): memory growth over many reload
//! cycles, mappings of private copies left behind, and reload latency next to the raw cost of
//! `dlopen` + `dlsym` + `plugin_entry` + `dlclose` of the same file.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use calc_host::events::HostEvent;
use calc_host::loader::still_mapped;
use calc_host::manager::LiveOp;
use calc_host::PluginManager;

/// A plugin to measure: two builds of it whose `version()` returns 1 and 2.
#[derive(Debug, Clone)]
pub struct Subject {
    /// What the table calls it.
    pub label: String,
    /// The plugin's name (as in its `Unloaded` events).
    pub plugin: String,
    /// The build whose `version()` is 1.
    pub v1: PathBuf,
    /// The build whose `version()` is 2.
    pub v2: PathBuf,
}

/// Median and 95th percentile of a set of durations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// The median.
    pub median: Duration,
    /// The 95th percentile (nearest rank).
    pub p95: Duration,
}

impl Stats {
    /// The median and p95 of `samples` (zero when empty).
    pub fn of(mut samples: Vec<Duration>) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        samples.sort();
        let n = samples.len();
        Stats {
            median: samples[n / 2],
            p95: samples[(n * 95).div_ceil(100) - 1],
        }
    }
}

/// What [`measure`] found for one [`Subject`].
#[derive(Debug, Clone)]
pub struct Report {
    /// The subject's label.
    pub label: String,
    /// Size of the v1 library file.
    pub file_bytes: u64,
    /// Measured reload cycles (after the warm-up).
    pub cycles: usize,
    /// Resident set size after the warm-up, KiB (one version loaded).
    pub rss_before_kib: u64,
    /// Resident set size after the measured cycles, KiB (one version loaded).
    pub rss_after_kib: u64,
    /// `Unloaded` events of the subject, warm-up and final unload included.
    pub unloads: usize,
    /// Of those, how many did not report `unmapped: Some(true)`.
    pub not_unmapped: usize,
    /// Lines of `/proc/self/maps` naming a private copy once everything was dropped.
    pub leftover_mappings: usize,
    /// Files left in the private-copy directory once everything was dropped.
    pub leftover_files: usize,
    /// From renaming the new file into place to the first call answered by the new version
    /// (`reload_file` + one call).
    pub reload: Stats,
    /// Of which the `rename` itself (on ext4 it frees the replaced file's blocks).
    pub rename: Stats,
    /// The manager's own figure: opening the new copy to the swap (`Reloaded::elapsed`).
    pub swap: Stats,
    /// Reference: `dlopen` + `dlsym("plugin_entry")` + `plugin_entry()` + `dlclose` of the v1
    /// file, as many times.
    pub dlopen: Stats,
    /// Reference cycles after which the file was still mapped.
    pub dlopen_still_mapped: usize,
}

impl Report {
    /// RSS growth over the measured cycles, KiB (negative when it shrank).
    pub fn rss_growth_kib(&self) -> i64 {
        self.rss_after_kib as i64 - self.rss_before_kib as i64
    }
}

/// The process's resident set size in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Lines of `/proc/self/maps` that name a file under `dir`.
pub fn mappings_under(dir: &Path) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let needle = dir.to_string_lossy();
    maps.lines().filter(|l| l.contains(needle.as_ref())).count()
}

/// Replaces `to` with a copy of `from` the way a build tool should: copy to a temporary name in
/// the same directory, then rename (atomic; a process that has the old file mapped keeps it).
fn stage(from: &Path, to: &Path) -> PathBuf {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    tmp
}

/// One reload cycle: renames the other build into place, reloads it and calls `version()`
/// until the new version answers. Returns the times (rename to first new answer, the rename,
/// the manager's swap) and the version now serving.
fn cycle(
    m: &mut PluginManager,
    op: &LiveOp,
    subject: &Subject,
    file: &Path,
    serving: f64,
) -> ([Duration; 3], f64) {
    let (from, want) = if serving == 1.0 {
        (&subject.v2, 2.0)
    } else {
        (&subject.v1, 1.0)
    };
    let tmp = stage(from, file);
    let start = Instant::now();
    std::fs::rename(&tmp, file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let renamed = start.elapsed();
    let swap = match m.reload_file(file) {
        Ok(HostEvent::Reloaded { elapsed, .. }) => elapsed,
        Ok(other) => panic!("{}: expected a reload, got {other}", subject.label),
        Err(e) => panic!("{}: reload failed: {e}", subject.label),
    };
    loop {
        match op.call(&[]) {
            Ok(v) if v == want => break,
            Ok(_) => {}
            Err(e) => panic!("{}: version() failed: {e}", subject.label),
        }
    }
    ([start.elapsed(), renamed, swap], want)
}

/// Drains `events` (so that queued events do not count as memory growth), counting the
/// subject's `Unloaded` events into `counts`: (all, not reported as unmapped).
fn drain(events: &Receiver<HostEvent>, plugin: &str, counts: &mut (usize, usize)) {
    *counts = events.try_iter().fold(*counts, |(all, bad), e| match e {
        HostEvent::Unloaded { name, unmapped, .. } if name == plugin => {
            (all + 1, bad + usize::from(unmapped != Some(true)))
        }
        _ => (all, bad),
    })
}

/// Reloads `subject` `warmup + cycles` times in a hot-reload manager working in `work` (a fresh
/// directory), alternating its two builds, and measures the last `cycles`; then measures as
/// many raw `dlopen` cycles of the v1 file.
pub fn measure(subject: &Subject, work: &Path, cycles: usize, warmup: usize) -> Report {
    let plugins = work.join("plugins");
    let copies = work.join("copies");
    std::fs::create_dir_all(&plugins).unwrap_or_else(|e| panic!("{}: {e}", plugins.display()));
    let file = plugins.join(subject.v1.file_name().expect("a file name"));
    std::fs::rename(stage(&subject.v1, &file), &file).expect("installs v1");

    let (tx, events) = mpsc::channel();
    let mut m = PluginManager::new();
    m.enable_hot_reload(copies.clone());
    m.report_events_to(tx);
    if let Err(e) = m.load_file(&file) {
        panic!("{}: {e}", subject.label);
    }
    let op = m.live_operation("version").expect("version() is offered");
    let mut serving = op.call(&[]).expect("version() answers");
    assert_eq!(serving, 1.0, "{}: v1 must answer 1", subject.label);

    let mut counts = (0, 0);
    for _ in 0..warmup {
        serving = cycle(&mut m, &op, subject, &file, serving).1;
        drain(&events, &subject.plugin, &mut counts);
    }
    // Allocated (and touched) before the first reading, so that they do not count as growth.
    let mut reload = vec![Duration::ZERO; cycles];
    let mut rename = vec![Duration::ZERO; cycles];
    let mut swap = vec![Duration::ZERO; cycles];
    let rss_before_kib = rss_kib();
    for i in 0..cycles {
        let (times, now) = cycle(&mut m, &op, subject, &file, serving);
        [reload[i], rename[i], swap[i]] = times;
        serving = now;
        drain(&events, &subject.plugin, &mut counts);
    }
    let rss_after_kib = rss_kib();
    drop(op);
    drop(m);
    drain(&events, &subject.plugin, &mut counts);
    let (unloads, not_unmapped) = counts;
    let leftover_mappings = mappings_under(&copies);
    let leftover_files = std::fs::read_dir(&copies).map_or(0, |d| d.count());

    let mut dlopen = Vec::with_capacity(cycles);
    let mut dlopen_still_mapped = 0;
    for _ in 0..cycles {
        let start = Instant::now();
        raw_open_close(&subject.v1);
        dlopen.push(start.elapsed());
        if still_mapped(&subject.v1) != Some(false) {
            dlopen_still_mapped += 1;
        }
    }

    Report {
        label: subject.label.clone(),
        file_bytes: std::fs::metadata(&subject.v1).map_or(0, |m| m.len()),
        cycles,
        rss_before_kib,
        rss_after_kib,
        unloads,
        not_unmapped,
        leftover_mappings,
        leftover_files,
        reload: Stats::of(reload),
        rename: Stats::of(rename),
        swap: Stats::of(swap),
        dlopen: Stats::of(dlopen),
        dlopen_still_mapped,
    }
}

/// `dlopen` (`RTLD_NOW | RTLD_LOCAL`, as the host), `dlsym("plugin_entry")`, one call of it,
/// `dlclose`.
fn raw_open_close(path: &Path) {
    use libloading::os::unix::{Library, Symbol, RTLD_LOCAL, RTLD_NOW};
    type Entry = unsafe extern "C" fn() -> *const std::ffi::c_void;
    // SAFETY: the file is one of the test's own plugin builds; loading it runs only its
    // initialisers, and the path is absolute.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: `plugin_entry` has the `calc_plugin_entry_fn` signature (ABI contract).
    let entry: Symbol<Entry> = unsafe { library.get(b"plugin_entry\0") }
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: `plugin_entry` takes nothing and has no side effects (ABI contract).
    let descriptor = unsafe { entry() };
    assert!(
        !descriptor.is_null(),
        "{}: plugin_entry returned NULL",
        path.display()
    );
    library
        .close()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// The reports as a plain-text table.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<22} {:>9} {:>6} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "plugin",
        "file KiB",
        "cycles",
        "RSS0 KiB",
        "RSS1 KiB",
        "growth",
        "unloads",
        "!unmapped",
        "leftover",
        "reload50",
        "reload95",
        "rename50",
        "swap50",
        "dlopen50",
        "dlopen95",
    ));
    for r in reports {
        out.push_str(&format!(
            "{:<22} {:>9} {:>6} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            r.label,
            r.file_bytes / 1024,
            r.cycles,
            r.rss_before_kib,
            r.rss_after_kib,
            r.rss_growth_kib(),
            r.unloads,
            r.not_unmapped,
            format!("{}m/{}f", r.leftover_mappings, r.leftover_files),
            ms(r.reload.median),
            ms(r.reload.p95),
            ms(r.rename.median),
            ms(r.swap.median),
            ms(r.dlopen.median),
            ms(r.dlopen.p95),
        ));
    }
    out.push_str(
        "(growth in KiB; leftover = mappings/files of private copies after everything was \
         dropped; times in ms: reload = rename into place -> first call on the new version, \
         rename = the rename alone, swap = the manager's open-to-swap time, dlopen = raw dlopen+dlsym+entry+dlclose of the \
         same file)\n",
    );
    for r in reports.iter().filter(|r| r.dlopen_still_mapped > 0) {
        out.push_str(&format!(
            "warning: {}: the raw reference left the file mapped after {} of {} dlcloses\n",
            r.label, r.dlopen_still_mapped, r.cycles
        ));
    }
    out
}
