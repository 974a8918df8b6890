//! Reading plugin memory without trusting the plugin's pointers.
//!
//! A descriptor is the plugin's own data: its pointers may be garbage, point into unmapped
//! memory or run off the end of a mapping. The loader reads every byte of it through a
//! [`Reader`], which never faults:
//!
//! - a read that lies wholly inside a readable `PT_LOAD` segment of the library that returned
//!   the descriptor (the usual case: descriptors, operation tables and string literals are
//!   static data) is a plain memory copy: those segments are mapped for as long as the
//!   library is open, and the map of them is taken from the loaded library's own program
//!   headers ([`LibraryMap::of`]);
//! - any other read goes through `process_vm_readv(2)` on the host's own process, which copies
//!   what is mapped and readable and reports `EFAULT` for the rest instead of raising
//!   `SIGSEGV` (with `/proc/self/mem` as the fallback where a seccomp policy forbids the call).
//!
//! [`LibraryMap::is_executable`] also tells whether `plugin_entry` lies in an executable segment
//! of its library, so that a data object exported under that name is refused before it is called.
//!
//! The walk over the segments is written by hand (no crate reads the dynamic loader's view of
//! one library's segments); the header types are `libc`'s (`Elf64_Ehdr`, `Elf64_Phdr`), and
//! the program headers are read through the same checked reads, never dereferenced directly.

use std::ffi::{c_char, c_void};
use std::mem::{size_of, MaybeUninit};

use calc_sdk::abi;

/// A string field as the loader found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawStr {
    /// The pointer was NULL.
    Null,
    /// No NUL within `CALC_MAX_STRING_LEN` bytes.
    TooLong,
    /// The bytes before the NUL.
    Bytes(Vec<u8>),
    /// The string runs into memory that is not mapped or not readable before its NUL (or
    /// points there).
    Unreadable {
        /// Where the string starts.
        address: usize,
        /// How many bytes from there were readable (none of them NUL).
        readable: usize,
    },
}

/// One `PT_LOAD` segment of a loaded library, as mapped: `[start, end)` and its `p_flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    start: usize,
    end: usize,
    flags: u32,
}

/// Program headers a library may have before the map gives up (and every read is checked).
const MAX_PHDRS: usize = 256;
/// `dlinfo` request for the program headers (glibc 2.36, `<dlfcn.h>`); the `libc` crate does
/// not define it for Linux.
const RTLD_DI_PHDR: libc::c_int = 11;

/// The loaded segments of one library, from its program headers in memory.
#[derive(Debug, Clone, Default)]
pub struct LibraryMap {
    segments: Vec<Segment>,
}

/// The public head of glibc's `struct link_map` (`<link.h>`), which `dlinfo(RTLD_DI_LINKMAP)`
/// returns.
#[repr(C)]
struct LinkMapHead {
    l_addr: usize,
    l_name: *const c_char,
}

/// The ELF headers as the dynamic loader maps them (this host's byte order), from `libc`.
type Ehdr = libc::Elf64_Ehdr;
type Phdr = libc::Elf64_Phdr;

impl LibraryMap {
    /// The segments of the library `handle` (a `dlopen` handle), or an empty map (every read
    /// then goes through the checked path, and nothing counts as executable) when they cannot
    /// be read: not a 64-bit ELF object, or its headers not mapped where the loader put it.
    ///
    /// # Safety
    /// `handle` must be a handle `dlopen` returned that has not been closed.
    pub unsafe fn of(handle: *mut c_void) -> LibraryMap {
        let mut map: *mut LinkMapHead = std::ptr::null_mut();
        // SAFETY: `handle` is an open `dlopen` handle (contract); RTLD_DI_LINKMAP writes one
        // pointer to the library's `struct link_map` into `map`.
        let rc = unsafe {
            libc::dlinfo(
                handle,
                libc::RTLD_DI_LINKMAP,
                (&mut map as *mut *mut LinkMapHead).cast(),
            )
        };
        if rc != 0 || map.is_null() {
            return LibraryMap::default();
        }
        // SAFETY: the loader's link map entry is valid while the library is open.
        let base = unsafe { (*map).l_addr };
        let mut phdrs: *const Phdr = std::ptr::null();
        // SAFETY: as above; RTLD_DI_PHDR (glibc 2.36) writes a pointer to the dynamic loader's
        // own copy of the program headers and returns their count, or fails (-1) on an older
        // C library, which then leaves `phdrs` alone.
        let count = unsafe {
            libc::dlinfo(
                handle,
                RTLD_DI_PHDR,
                (&mut phdrs as *mut *const Phdr).cast(),
            )
        };
        match usize::try_from(count) {
            Ok(count) if count > 0 && count <= MAX_PHDRS && !phdrs.is_null() => {
                // SAFETY: the dynamic loader's program headers of an open library: `count`
                // initialised `Phdr`s, valid while the library is open; copied at once.
                let table = unsafe { std::slice::from_raw_parts(phdrs, count) };
                Self::from_phdrs(base, table).unwrap_or_default()
            }
            _ => Self::from_headers(base).unwrap_or_default(),
        }
    }

    /// The loaded segments described by `phdrs`, for an object loaded at bias `base`.
    fn from_phdrs(base: usize, phdrs: &[Phdr]) -> Option<LibraryMap> {
        let mut segments = Vec::new();
        for ph in phdrs {
            if ph.p_type != libc::PT_LOAD || ph.p_memsz == 0 {
                continue;
            }
            let start = base.checked_add(usize::try_from(ph.p_vaddr).ok()?)?;
            let end = start.checked_add(usize::try_from(ph.p_memsz).ok()?)?;
            segments.push(Segment {
                start,
                end,
                flags: ph.p_flags,
            });
        }
        Some(LibraryMap { segments })
    }

    /// The fallback for a C library without `RTLD_DI_PHDR`: reads the ELF header and program
    /// headers of the object loaded at bias `base`. A shared
    /// object's first `PT_LOAD` starts at file offset 0 and address 0, so its ELF header is
    /// mapped at `base`; every read is checked, and the map is only trusted when it says so.
    fn from_headers(base: usize) -> Option<LibraryMap> {
        let reader = Reader::checked();
        let ehdr: Ehdr = reader.read_value(base)?;
        if ehdr.e_ident[..4] != object::elf::ELFMAG
            || ehdr.e_ident[libc::EI_CLASS] != object::elf::ELFCLASS64
            || usize::from(ehdr.e_phentsize) != size_of::<Phdr>()
            || usize::from(ehdr.e_phnum) > MAX_PHDRS
        {
            return None;
        }
        let phoff = usize::try_from(ehdr.e_phoff).ok()?;
        let count = usize::from(ehdr.e_phnum);
        // One read for the whole table.
        let mut table = vec![0u8; count * size_of::<Phdr>()];
        if reader.read(base.checked_add(phoff)?, &mut table) != table.len() {
            return None;
        }
        let phdrs: Vec<Phdr> = table
            .chunks_exact(size_of::<Phdr>())
            // SAFETY: each chunk is exactly `size_of::<Phdr>()` initialised bytes, and any bytes
            // are a valid `Phdr` (integers only); `read_unaligned` needs no alignment.
            .map(|raw| unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) })
            .collect();
        // The map is only right if the ELF header really was where this read it from.
        phdrs
            .iter()
            .any(|ph| ph.p_type == libc::PT_LOAD && ph.p_offset == 0 && ph.p_vaddr == 0)
            .then(|| Self::from_phdrs(base, &phdrs))
            .flatten()
    }

    /// Whether `addr` lies in an executable segment of the library.
    pub fn is_executable(&self, addr: usize) -> bool {
        self.segments
            .iter()
            .any(|s| s.flags & libc::PF_X != 0 && (s.start..s.end).contains(&addr))
    }

    /// How many bytes from `addr` to the end of the readable segment that holds it, if one
    /// does.
    fn readable_run(&self, addr: usize) -> Option<usize> {
        self.segments
            .iter()
            .find(|s| s.flags & libc::PF_R != 0 && (s.start..s.end).contains(&addr))
            .map(|s| s.end - addr)
    }
}

/// Reads plugin memory without faulting (see the module docs).
///
/// Protections are per page, so one successful checked read of a byte proves its whole page
/// readable: outside the library's segments the reader probes each page once (one system call)
/// and then copies from it directly. The pages it proved are remembered for the reader's life,
/// which is one descriptor's validation, while no plugin code runs.
#[derive(Debug)]
pub struct Reader<'a> {
    map: Option<&'a LibraryMap>,
    /// Pages outside `map` proved readable, by their first address.
    pages: std::cell::RefCell<Vec<usize>>,
    page_size: usize,
}

impl<'a> Reader<'a> {
    /// A reader that copies directly what lies in `map`'s readable segments and probes the
    /// pages of every other read.
    pub fn new(map: &'a LibraryMap) -> Self {
        Reader {
            map: Some(map),
            ..Self::checked()
        }
    }

    /// A reader that probes the page of every read.
    pub fn checked() -> Self {
        // SAFETY: plain sysconf query.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Reader {
            map: None,
            pages: Default::default(),
            page_size: usize::try_from(page_size).unwrap_or(4096).max(4096),
        }
    }

    /// How many bytes from `addr` are proved readable: to the end of its library segment, or
    /// of its page once a probe proved the page readable; 0 when not readable.
    fn readable_run(&self, addr: usize) -> usize {
        if addr == 0 {
            return 0;
        }
        if let Some(run) = self.map.and_then(|m| m.readable_run(addr)) {
            return run;
        }
        let page = addr & !(self.page_size - 1);
        let known = self.pages.borrow().contains(&page);
        if !known {
            if checked_read(addr, &mut [0u8; 1]) != 1 {
                return 0;
            }
            self.pages.borrow_mut().push(page);
        }
        page + self.page_size - addr
    }

    /// Calls `each` with the proved-readable runs of `[addr, addr + len)` in order, until it
    /// returns `false`, the range ends or a byte is not readable; returns the bytes covered.
    fn runs(&self, addr: usize, len: usize, mut each: impl FnMut(&[u8]) -> bool) -> usize {
        let mut done = 0;
        while done < len {
            let Some(at) = addr.checked_add(done) else {
                break;
            };
            let run = self.readable_run(at).min(len - done);
            if run == 0 {
                break;
            }
            // SAFETY: `[at, at + run)` lies in a readable segment of an open library (the
            // reader borrows its map, which lives no longer than the library) or in a page a
            // checked read just proved mapped and readable, while no plugin code runs to unmap
            // it.
            let bytes = unsafe { std::slice::from_raw_parts(at as *const u8, run) };
            done += run;
            if !each(bytes) {
                break;
            }
        }
        done
    }

    /// How many of the `len` bytes from `addr` are readable (a prefix), without copying them.
    pub fn readable(&self, addr: usize, len: usize) -> usize {
        self.runs(addr, len, |_| true)
    }

    /// Copies up to `buf.len()` bytes from `addr`; returns how many were readable (a prefix).
    pub fn read(&self, addr: usize, buf: &mut [u8]) -> usize {
        let mut filled = 0;
        self.runs(addr, buf.len(), |bytes| {
            buf[filled..filled + bytes.len()].copy_from_slice(bytes);
            filled += bytes.len();
            true
        })
    }

    /// Reads a whole `T` at `addr`, or `None` when any byte of it is unreadable.
    fn read_value<T: Copy>(&self, addr: usize) -> Option<T> {
        let mut value = MaybeUninit::<T>::zeroed();
        // SAFETY: the zeroed `T` is `size_of::<T>()` initialised bytes, viewed as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(value.as_mut_ptr().cast::<u8>(), size_of::<T>())
        };
        if self.read(addr, bytes) != bytes.len() {
            return None;
        }
        // SAFETY: only used for the plain integer structs of this module, for which any bytes
        // are a valid value.
        Some(unsafe { value.assume_init() })
    }

    /// Copies the first `available` bytes (at most `size_of::<T>()`) of a plugin struct at
    /// `src` into a zeroed `T`, so that fields a plugin built against an older minor does not
    /// have read as zero (NULL pointers, `None` functions). `None` when any of those bytes is
    /// unreadable.
    ///
    /// # Safety
    /// `T` must be a `#[repr(C)]` ABI struct for which any bytes are a valid value (integers,
    /// raw pointers, `Option<extern fn>`: the loader never calls a function pointer it read
    /// before validating it, and validation only tests it for NULL).
    pub unsafe fn read_prefix<T>(&self, src: *const T, available: usize) -> Option<T> {
        let mut value = MaybeUninit::<T>::zeroed();
        let n = available.min(size_of::<T>());
        // SAFETY: the destination is a local of `size_of::<T>() >= n` bytes, all initialised
        // (zeroed).
        let bytes = unsafe { std::slice::from_raw_parts_mut(value.as_mut_ptr().cast::<u8>(), n) };
        if self.read(src as usize, bytes) != n {
            return None;
        }
        // SAFETY: any bytes are a valid `T` (contract).
        Some(unsafe { value.assume_init() })
    }

    /// Reads a NUL-terminated string of at most `CALC_MAX_STRING_LEN` bytes, touching no byte
    /// past its NUL.
    pub fn read_str(&self, p: *const c_char) -> RawStr {
        if p.is_null() {
            return RawStr::Null;
        }
        let max = abi::CALC_MAX_STRING_LEN as usize;
        let mut text = Vec::new();
        let mut terminated = false;
        let covered = self.runs(p as usize, max + 1, |bytes| {
            match bytes.iter().position(|&b| b == 0) {
                Some(len) => {
                    text.extend_from_slice(&bytes[..len]);
                    terminated = true;
                }
                None => text.extend_from_slice(bytes),
            }
            !terminated
        });
        match (terminated, covered) {
            (true, _) => RawStr::Bytes(text),
            (false, n) if n > max => RawStr::TooLong,
            (false, readable) => RawStr::Unreadable {
                address: p as usize,
                readable,
            },
        }
    }
}

/// Copies what is readable of `[addr, addr + buf.len())` into `buf` through the kernel, which
/// fails with `EFAULT` instead of faulting; returns the length of the readable prefix.
fn checked_read(addr: usize, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        let local = libc::iovec {
            iov_base: rest.as_mut_ptr().cast(),
            iov_len: rest.len(),
        };
        let remote = libc::iovec {
            iov_base: (addr + done) as *mut c_void,
            iov_len: rest.len(),
        };
        // SAFETY: `local` describes `rest`, writable and owned by us; the kernel checks the
        // remote range and copies only what is mapped and readable. Our own pid needs no
        // ptrace permission.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        match n {
            n if n > 0 => done += n as usize,
            0 => break,
            _ => match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOSYS | libc::EPERM) => return done + proc_mem_read(addr + done, rest),
                _ => break,
            },
        }
    }
    done
}

/// The fallback of [`checked_read`]: `pread` on `/proc/self/mem` (also fails with `EIO`
/// instead of faulting), for systems whose seccomp policy forbids `process_vm_readv`.
fn proc_mem_read(addr: usize, buf: &mut [u8]) -> usize {
    use std::os::unix::fs::FileExt;
    let Ok(mem) = std::fs::File::open("/proc/self/mem") else {
        return 0;
    };
    let mut done = 0;
    while done < buf.len() {
        match mem.read_at(&mut buf[done..], (addr + done) as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}

/// Whether `addr` lies in an executable mapping of the process, from `/proc/self/maps`: the
/// slow fallback of [`LibraryMap::is_executable`] for a library whose program headers could not
/// be read where it was loaded.
pub fn is_executable_mapping(addr: usize) -> bool {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    maps.lines().any(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            return false;
        };
        let Some((start, end)) = range.split_once('-') else {
            return false;
        };
        let parse = |s| usize::from_str_radix(s, 16).ok();
        matches!((parse(start), parse(end)), (Some(start), Some(end)) if (start..end).contains(&addr))
            && perms.as_bytes().get(2) == Some(&b'x')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two pages, the second unmapped: a string that runs into it is unreadable, not a fault.
    struct GuardedPage {
        base: *mut u8,
        page: usize,
    }

    impl GuardedPage {
        fn new() -> Self {
            // SAFETY: plain sysconf query.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
            // SAFETY: an anonymous private mapping of two pages; checked below.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    2 * page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED);
            // SAFETY: the second page of the mapping just made.
            let rc = unsafe { libc::munmap(base.cast::<u8>().add(page).cast(), page) };
            assert_eq!(rc, 0);
            GuardedPage {
                base: base.cast(),
                page,
            }
        }

        /// The address `back` bytes before the end of the readable page, filled with `fill`.
        fn tail(&self, back: usize, fill: u8) -> *const c_char {
            // SAFETY: `[page - back, page)` lies in the readable first page.
            unsafe {
                let p = self.base.add(self.page - back);
                std::ptr::write_bytes(p, fill, back);
                p.cast()
            }
        }
    }

    impl Drop for GuardedPage {
        fn drop(&mut self) {
            // SAFETY: the first page is still ours.
            unsafe { libc::munmap(self.base.cast(), self.page) };
        }
    }

    #[test]
    fn a_string_that_runs_into_unmapped_memory_is_unreadable() {
        let guard = GuardedPage::new();
        let p = guard.tail(10, b'a');
        assert_eq!(
            Reader::checked().read_str(p),
            RawStr::Unreadable {
                address: p as usize,
                readable: 10
            }
        );
        let p = guard.tail(10, 0);
        assert_eq!(Reader::checked().read_str(p), RawStr::Bytes(Vec::new()));
    }

    #[test]
    fn a_string_across_two_readable_pages_is_read_whole_with_one_probe_a_page() {
        let guard = GuardedPage::new();
        let reader = Reader::checked();
        // Two strings in the one readable page before the guard.
        let first = guard.tail(16, b'x');
        // SAFETY: the last byte of the 16-byte tail written above.
        unsafe { *(first as *mut u8).add(15) = 0 };
        assert_eq!(reader.read_str(first), RawStr::Bytes(vec![b'x'; 15]));
        // A second string in the same page costs no second probe.
        // SAFETY: within the tail written above.
        let second = unsafe { first.add(8) };
        assert_eq!(reader.read_str(second), RawStr::Bytes(vec![b'x'; 7]));
        assert_eq!(reader.pages.borrow().len(), 1);
        // Across a page boundary of a heap buffer: two pages proved, the string whole.
        let page = reader.page_size;
        let mut heap = vec![b'y'; 3 * page];
        let start = (heap.as_ptr() as usize + page) & !(page - 1);
        let offset = start - heap.as_ptr() as usize;
        heap[offset + 10] = 0;
        let text = &heap[offset - 20..];
        let fresh = Reader::checked();
        assert_eq!(
            fresh.read_str(text.as_ptr().cast()),
            RawStr::Bytes(vec![b'y'; 30])
        );
        assert_eq!(fresh.pages.borrow().len(), 2);
    }

    #[test]
    fn unmapped_and_low_addresses_read_nothing() {
        let mut buf = [0u8; 16];
        assert_eq!(Reader::checked().read(0x10, &mut buf), 0);
        assert_eq!(Reader::checked().read(0, &mut buf), 0);
        let guard = GuardedPage::new();
        let end = guard.tail(4, 7) as usize + 4;
        assert_eq!(Reader::checked().read(end, &mut buf), 0);
        assert_eq!(Reader::checked().read(end - 4, &mut buf), 4);
        assert_eq!(buf[..4], [7; 4]);
    }

    #[test]
    fn mapped_memory_reads_whole_and_the_fallback_agrees() {
        let text = b"hello, plugin\0";
        assert_eq!(
            Reader::checked().read_str(text.as_ptr().cast()),
            RawStr::Bytes(b"hello, plugin".to_vec())
        );
        let mut buf = [0u8; 14];
        assert_eq!(proc_mem_read(text.as_ptr() as usize, &mut buf), 14);
        assert_eq!(&buf, text);
        assert_eq!(proc_mem_read(0x10, &mut buf), 0);
    }

    #[test]
    fn the_map_of_a_loaded_library_knows_its_code_and_data() {
        // The C library itself: `getpid` is code, `environ`'s storage is not executable.
        let name = c"libc.so.6";
        // SAFETY: opening an already-loaded system library adds a reference; closed below.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        assert!(!handle.is_null());
        // SAFETY: `handle` is open until the dlclose below.
        let map = unsafe { LibraryMap::of(handle) };
        // SAFETY: plain symbol lookups in an open handle.
        let (getpid, environ) = unsafe {
            (
                libc::dlsym(handle, c"getpid".as_ptr()) as usize,
                libc::dlsym(handle, c"environ".as_ptr()) as usize,
            )
        };
        assert!(getpid != 0 && environ != 0);
        assert!(map.is_executable(getpid));
        assert!(is_executable_mapping(getpid));
        assert!(!map.is_executable(environ));
        assert!(!is_executable_mapping(environ));
        assert!(!map.is_executable(0x10));
        assert!(!is_executable_mapping(0x10));
        let reader = Reader::new(&map);
        let mut buf = [0u8; 4];
        assert_eq!(reader.read(getpid, &mut buf), 4);
        // The fallback for C libraries without RTLD_DI_PHDR finds the same segments.
        let mut link: *mut LinkMapHead = std::ptr::null_mut();
        // SAFETY: as in `LibraryMap::of`.
        let rc = unsafe {
            libc::dlinfo(
                handle,
                libc::RTLD_DI_LINKMAP,
                (&mut link as *mut *mut LinkMapHead).cast(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: the loader's link map entry of the open handle.
        let base = unsafe { (*link).l_addr };
        let fallback = LibraryMap::from_headers(base).expect("libc's ELF header is mapped");
        assert!(!map.segments.is_empty());
        assert_eq!(fallback.segments, map.segments);
        // SAFETY: the handle from the dlopen above.
        unsafe { libc::dlclose(handle) };
    }
}
