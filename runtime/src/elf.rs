//! What a plugin's library file says about unloading, read from the file before anything of it
//! is loaded (with the `object` crate).
//!
//! `dlclose` never unloads a library that is marked `DF_1_NODELETE` (linked with
//! `-z nodelete`, or opened with `RTLD_NODELETE`) or that defines `STB_GNU_UNIQUE` symbols
//! (g++ emits them for static variables of inline functions and template static members with
//! default visibility). Such a plugin works, but hot reload leaves every old version in memory:
//! `calc plugins check` warns about both (see docs/RELOAD.md).
#![forbid(unsafe_code)]

use std::path::Path;

use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, Sym};
use object::Endianness;

/// Something in a library file that keeps the dynamic loader from unloading it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UnloadBlocker {
    /// `DF_1_NODELETE` is set in the dynamic section.
    NoDelete,
    /// The library defines `STB_GNU_UNIQUE` symbols.
    UniqueSymbols {
        /// How many.
        count: usize,
        /// The first one, as a sample.
        first: String,
    },
    /// A trial load (`init`, `shutdown`, close, in a child) showed thread-local destructors
    /// registered by the plugin's code keeping it loaded until their thread exits.
    ThreadLocalDestructors,
    /// A trial load showed it stays loaded after it is closed, even once the thread that ran
    /// it has exited.
    StaysLoaded,
    /// The file is larger than [`MAX_SCANNED_FILE`]: it was not read.
    NotScanned {
        /// Its size in bytes.
        size: u64,
    },
    /// The trial load could not be made.
    TrialFailed {
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for UnloadBlocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnloadBlocker::NoDelete => write!(
                f,
                "DF_1_NODELETE is set (linked with -z nodelete): the library is never unloaded, \
                 and hot reload keeps every old version in memory"
            ),
            UnloadBlocker::UniqueSymbols { count, first } => write!(
                f,
                "{count} STB_GNU_UNIQUE symbol{} (e.g. {first}; g++ emits them for statics of \
                 inline functions and templates: build with -fvisibility=hidden or \
                 -fno-gnu-unique): the library is never unloaded, and hot reload keeps every \
                 old version in memory",
                if *count == 1 { "" } else { "s" }
            ),
            UnloadBlocker::ThreadLocalDestructors => write!(
                f,
                "thread-local destructors registered by its code (C++ thread_local objects, \
                 Rust thread_local! values with Drop) keep it loaded until the thread that made \
                 them exits: unloaded or reloaded while that thread lives, it stays mapped"
            ),
            UnloadBlocker::StaysLoaded => write!(
                f,
                "stays loaded after a trial load, init, shutdown and close, even once the \
                 thread that ran them has exited"
            ),
            UnloadBlocker::NotScanned { size } => write!(
                f,
                "not scanned for what keeps it loaded: {size} bytes, more than the {} MiB read",
                MAX_SCANNED_FILE >> 20
            ),
            UnloadBlocker::TrialFailed { reason } => {
                write!(f, "the trial load and unload failed: {reason}")
            }
        }
    }
}

/// What in the 64-bit ELF file `bytes` keeps it from being unloaded; empty for a file that is
/// not one (the loader refuses those with a reason of its own).
pub fn unload_blockers_of(bytes: &[u8]) -> Vec<UnloadBlocker> {
    let Ok(file) = ElfFile64::<Endianness>::parse(bytes) else {
        return Vec::new();
    };
    let endian = file.endian();
    let header = file.elf_header();
    let mut found = Vec::new();
    let no_delete = header
        .program_headers(endian, bytes)
        .ok()
        .and_then(|phdrs| {
            use object::read::elf::ProgramHeader;
            phdrs
                .iter()
                .find_map(|ph| ph.dynamic(endian, bytes).ok().flatten())
        })
        .is_some_and(|dynamic| {
            dynamic.iter().any(|d| {
                d.d_tag(endian) == elf::DT_FLAGS_1
                    && d.d_val(endian) & u64::from(elf::DF_1_NODELETE) != 0
            })
        });
    if no_delete {
        found.push(UnloadBlocker::NoDelete);
    }
    let symbols = file.elf_dynamic_symbol_table();
    let unique: Vec<String> = symbols
        .symbols()
        .iter()
        .filter(|s| s.st_bind() == elf::STB_GNU_UNIQUE && !s.is_undefined(endian))
        .map(|s| {
            String::from_utf8_lossy(s.name(endian, symbols.strings()).unwrap_or(b"?")).into_owned()
        })
        .collect();
    if let Some(first) = unique.first() {
        found.push(UnloadBlocker::UniqueSymbols {
            count: unique.len(),
            first: first.clone(),
        });
    }
    found
}

/// Largest file [`unload_blockers`] reads: a bigger one (a sparse file of many GiB, say) is not
/// scanned, and says so, rather than read into memory whole.
pub const MAX_SCANNED_FILE: u64 = 256 << 20;

/// [`unload_blockers_of`] the file at `path`, which must be a regular file (a FIFO or device
/// is not read: empty). A file larger than [`MAX_SCANNED_FILE`] is not read: the answer is
/// [`UnloadBlocker::NotScanned`].
pub fn unload_blockers(path: &Path) -> std::io::Result<Vec<UnloadBlocker>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Vec::new());
    }
    if meta.len() > MAX_SCANNED_FILE {
        return Ok(vec![UnloadBlocker::NotScanned { size: meta.len() }]);
    }
    // At most the cap, even if the file grows meanwhile.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file).take(MAX_SCANNED_FILE).read_to_end(&mut bytes)?;
    Ok(unload_blockers_of(&bytes))
}
