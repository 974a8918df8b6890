//! Read-copy-update cells for the live operation slots: what makes a hot-reloadable call as
//! cheap as a pinned one.
//!
//! A reader (a call through a `LiveOp` or a compiled expression) marks its thread as "inside"
//! with two plain stores to a thread-local sequence number and a compiler fence, then loads the
//! cell's pointer; no lock, no allocation, no reference count and no shared cache line is
//! written. A writer (a reload) swaps the pointer and waits for a grace period: after a
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` system call, which makes every thread of the
//! process execute a full memory barrier, every reader that could still see the old value is
//! one whose sequence number was odd at that moment; the writer waits until each of those has
//! moved on, then drops the old value (which may unload a library). This is the "memb" flavour
//! of userspace RCU. Where `membarrier` is unavailable, readers use a real fence instead
//! (slower, same guarantees). A reader stuck in a plugin for longer than
//! [`GRACE_WAIT`] does not block the writer: the old value is handed to a reclaimer thread that
//! drops it once the reader has left.
//!
//! This module and `loader` are the only host modules with `unsafe` code.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{
    compiler_fence, fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a writer waits for readers before handing the old value to the reclaimer thread.
pub const GRACE_WAIT: Duration = Duration::from_millis(50);

/// One reading thread's state.
struct Reader {
    /// Even: outside any read-side section; odd: inside. Written only by its thread.
    seq: AtomicU64,
    /// Copy of the process-wide membarrier flag, next to `seq` so the fast path reads one line.
    membarrier: bool,
    /// Set when the thread has exited; it can no longer be inside a section.
    dead: AtomicBool,
}

/// Every reader that ever registered (pruned of dead ones by writers).
static READERS: Mutex<Vec<Arc<Reader>>> = Mutex::new(Vec::new());
/// Readers without a thread-local slot (threads being torn down): counted globally.
static FALLBACK_READERS: AtomicUsize = AtomicUsize::new(0);

/// Whether `membarrier` is registered for this process (readers then need no fence). Decided
/// when the first cell is created, before any reader of any cell exists.
static MEMBARRIER: AtomicBool = AtomicBool::new(false);

fn init_membarrier() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| MEMBARRIER.store(register_membarrier(), Ordering::SeqCst));
}

#[inline]
fn membarrier_ready() -> bool {
    MEMBARRIER.load(Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
fn register_membarrier() -> bool {
    const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    // SAFETY: the membarrier system call with QUERY takes no pointers and has no side effects.
    let supported = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
    if supported < 0 || supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED == 0 {
        return false;
    }
    // SAFETY: registering this process for private expedited barriers takes no pointers.
    let registered = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    registered == 0
}

#[cfg(not(target_os = "linux"))]
fn register_membarrier() -> bool {
    false
}

/// Makes every thread of the process execute a full memory barrier (or, without membarrier,
/// executes one here: readers then fence on their side).
fn global_barrier() {
    #[cfg(target_os = "linux")]
    if membarrier_ready() {
        const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
        // SAFETY: registered in `register_membarrier`; the call takes no pointers.
        let r =
            unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
        if r == 0 {
            return;
        }
    }
    fence(Ordering::SeqCst);
}

/// The per-thread state the fast path touches: one thread-local, no destructor.
struct Local {
    /// This thread's reader, or NULL before registration / after teardown.
    reader: Cell<*const Reader>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            reader: Cell::new(std::ptr::null()),
        }
    };
    /// Owns the registration; its destructor marks the reader dead.
    static OWNER: Registration = Registration::new();
}

struct Registration(Arc<Reader>);

impl Registration {
    fn new() -> Self {
        init_membarrier();
        let reader = Arc::new(Reader {
            seq: AtomicU64::new(0),
            membarrier: membarrier_ready(),
            dead: AtomicBool::new(false),
        });
        READERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&reader));
        Registration(reader)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| l.reader.set(std::ptr::null()));
        self.0.dead.store(true, Ordering::Release);
    }
}

#[cold]
fn register_reader() -> *const Reader {
    let r = OWNER
        .try_with(|o| Arc::as_ptr(&o.0))
        .unwrap_or(std::ptr::null());
    let _ = LOCAL.try_with(|l| l.reader.set(r));
    r
}

/// An open read-side section; the value read under it stays valid while it lives.
struct Section {
    /// This thread's reader, or NULL for the global fallback count.
    reader: *const Reader,
    /// The sequence number to publish on leaving: the next even number for an outermost
    /// section, the outer section's (odd) mark for a nested one. Unused for the fallback.
    exit_seq: u64,
    _not_send: PhantomData<*const ()>,
}

impl Section {
    #[inline]
    fn enter() -> Section {
        let mut reader = LOCAL.with(|local| local.reader.get());
        if reader.is_null() {
            reader = register_reader();
            if reader.is_null() {
                FALLBACK_READERS.fetch_add(1, Ordering::SeqCst);
                return Section {
                    reader,
                    exit_seq: 0,
                    _not_send: PhantomData,
                };
            }
        }
        // SAFETY: `reader` points to this thread's registered `Reader`, kept alive by the `OWNER`
        // registration (and the global list) for the life of the thread.
        let r = unsafe { &*reader };
        // Branch-free nesting: entering marks the sequence odd (a no-op store when an outer
        // section on this thread already did), and leaving publishes `seq + 2` for an outermost
        // section but restores the outer section's odd mark for a nested one.
        let seq = r.seq.load(Ordering::Relaxed);
        r.seq.store(seq | 1, Ordering::Relaxed);
        if r.membarrier {
            // The writer's membarrier supplies the StoreLoad barrier: only keep the compiler
            // from moving the pointer load above the store.
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
        Section {
            reader,
            exit_seq: seq + ((!seq & 1) << 1),
            _not_send: PhantomData,
        }
    }
}

impl Drop for Section {
    #[inline]
    fn drop(&mut self) {
        if self.reader.is_null() {
            FALLBACK_READERS.fetch_sub(1, Ordering::SeqCst);
        } else {
            // SAFETY: as in `enter`.
            let r = unsafe { &*self.reader };
            // Release: every read of the old value happens before a writer sees us leave.
            r.seq.store(self.exit_seq, Ordering::Release);
        }
    }
}

/// Waits until no reader can still see a value retired before the call; gives up after
/// `limit`, returning false.
fn synchronize(limit: Duration) -> bool {
    global_barrier();
    let inside: Vec<(Arc<Reader>, u64)> = {
        let mut readers = READERS.lock().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| !r.dead.load(Ordering::Acquire));
        readers
            .iter()
            .filter_map(|r| {
                let s = r.seq.load(Ordering::Acquire);
                (s & 1 == 1).then(|| (Arc::clone(r), s))
            })
            .collect()
    };
    let deadline = Instant::now() + limit;
    let mut spins = 0u32;
    for (r, s) in inside {
        while r.seq.load(Ordering::Acquire) == s && !r.dead.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return false;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    while FALLBACK_READERS.load(Ordering::SeqCst) != 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// A value taken out of an [`RcuCell`] that readers may still be using. Dropping it waits for a
/// grace period (see [`retire_all`] to retire many with one).
pub struct Retired(Option<Box<dyn Send>>);

impl Drop for Retired {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            retire(old);
        }
    }
}

/// Drops every retired value after one shared grace period (one `membarrier` for all of them).
pub fn retire_all(retired: Vec<Retired>) {
    let mut batch: Vec<Box<dyn Send>> = Vec::with_capacity(retired.len());
    for mut r in retired {
        batch.extend(r.0.take());
    }
    if !batch.is_empty() {
        retire(Box::new(batch));
    }
}

/// Drops `old` after a grace period: at once when readers leave within [`GRACE_WAIT`],
/// otherwise on the reclaimer thread.
fn retire(old: Box<dyn Send>) {
    if synchronize(GRACE_WAIT) {
        drop(old);
        return;
    }
    tracing::debug!("a reader is still inside an old version; reclaiming it in the background");
    static RECLAIMER: OnceLock<Mutex<std::sync::mpsc::Sender<Box<dyn Send>>>> = OnceLock::new();
    let tx = RECLAIMER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Send>>();
        std::thread::Builder::new()
            .name("calc-rcu-reclaimer".into())
            .spawn(move || {
                for old in rx {
                    while !synchronize(Duration::from_secs(1)) {}
                    drop(old);
                }
            })
            .expect("spawning the reclaimer thread");
        Mutex::new(tx)
    });
    let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(old);
}

/// A shared, atomically replaceable `Arc<T>` whose readers pay no atomic read-modify-write.
pub struct RcuCell<T> {
    ptr: AtomicPtr<T>,
    _owns: PhantomData<Arc<T>>,
}

// SAFETY: the cell hands out `&T` to readers on any thread and moves `Arc<T>`s between threads
// (stores, retirement), which needs `T: Send + Sync` exactly as `Arc<T>` does.
unsafe impl<T: Send + Sync> Send for RcuCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for RcuCell<T> {}

/// A read of an [`RcuCell`]: dereferences to the value that was current when it was taken, which
/// stays alive (and, for a plugin, loaded) until the guard is dropped. Keep it short-lived: a
/// writer waits for it (up to [`GRACE_WAIT`], then in the background).
pub struct RcuGuard<'a, T> {
    value: &'a T,
    _section: Section,
}

impl<T> Deref for RcuGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: Send + Sync + 'static> RcuCell<T> {
    /// A cell holding `value`.
    pub fn new(value: Arc<T>) -> Self {
        init_membarrier();
        RcuCell {
            ptr: AtomicPtr::new(Arc::into_raw(value).cast_mut()),
            _owns: PhantomData,
        }
    }

    /// A cell holding a new `Arc` of `value`.
    pub fn from_pointee(value: T) -> Self {
        Self::new(Arc::new(value))
    }

    /// Reads the current value.
    #[inline]
    pub fn load(&self) -> RcuGuard<'_, T> {
        let section = Section::enter();
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: `p` came from `Arc::into_raw` and is only released by `store`/`drop` after a
        // grace period, which waits for this section to end.
        let value = unsafe { &*p };
        RcuGuard {
            value,
            _section: section,
        }
    }

    /// A strong reference to the current value (for keeping it beyond a short read).
    pub fn load_full(&self) -> Arc<T> {
        let _section = Section::enter();
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: as in `load`, `p` is a live `Arc` allocation during the section; taking a new
        // strong count keeps it alive afterwards.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    /// Replaces the value. The old one is dropped once no reader can see it any more: before
    /// this returns, or (if a reader is stuck in a long call) later on a background thread.
    pub fn store(&self, value: Arc<T>) {
        drop(self.swap(value));
    }

    /// Replaces the value and returns the old one as a [`Retired`] token, to be dropped (after a
    /// grace period) alone or with others through [`retire_all`].
    pub fn swap(&self, value: Arc<T>) -> Retired {
        let old = self
            .ptr
            .swap(Arc::into_raw(value).cast_mut(), Ordering::AcqRel);
        // SAFETY: `old` came from `Arc::into_raw` and was owned by the cell.
        let old = unsafe { Arc::from_raw(old) };
        Retired(Some(Box::new(old)))
    }
}

impl<T> Drop for RcuCell<T> {
    fn drop(&mut self) {
        // No reader can be inside: they borrow the cell, and we have it exclusively.
        // SAFETY: the pointer came from `Arc::into_raw` and the cell owned it.
        drop(unsafe { Arc::from_raw(*self.ptr.get_mut()) });
    }
}

impl<T: std::fmt::Debug + Send + Sync + 'static> std::fmt::Debug for RcuCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RcuCell").field(&*self.load()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Waits (up to 10 s) for `done`, failing the test otherwise.
    fn wait_for(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    struct Tracked(usize, Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_stored_value_is_dropped_once_no_reader_sees_it() {
        let drops = Arc::new(AtomicUsize::new(0));
        let cell = RcuCell::from_pointee(Tracked(1, Arc::clone(&drops)));
        let guard = cell.load();
        assert_eq!(guard.0, 1);
        // A reader on another thread holds a guard to the old value across the store.
        drop(guard);
        cell.store(Arc::new(Tracked(2, Arc::clone(&drops))));
        // Grace periods are process-wide: a reader of another cell (another test running in
        // parallel) can defer the drop to the reclaimer thread, so wait for it.
        wait_for(|| drops.load(Ordering::SeqCst) == 1);
        assert_eq!(cell.load().0, 2);
        drop(cell);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_reader_inside_keeps_the_old_value_alive_until_it_leaves() {
        let drops = Arc::new(AtomicUsize::new(0));
        let cell = Arc::new(RcuCell::from_pointee(Tracked(1, Arc::clone(&drops))));
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
        let reader = {
            let cell = Arc::clone(&cell);
            std::thread::spawn(move || {
                let guard = cell.load();
                entered_tx.send(guard.0).unwrap();
                leave_rx.recv().unwrap();
                assert_eq!(guard.0, 1, "the old value is still intact");
            })
        };
        assert_eq!(entered_rx.recv().unwrap(), 1);
        cell.store(Arc::new(Tracked(2, Arc::clone(&drops)))); // hands off after GRACE_WAIT
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "not dropped while the reader is inside"
        );
        leave_tx.send(()).unwrap();
        reader.join().unwrap();
        wait_for(|| drops.load(Ordering::SeqCst) == 1);
    }

    #[test]
    fn nested_reads_on_one_thread_and_many_threads_see_consistent_values() {
        let cell = Arc::new(RcuCell::from_pointee(0u64));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let cell = Arc::clone(&cell);
                s.spawn(move || {
                    for _ in 0..20_000 {
                        let a = cell.load();
                        let b = cell.load();
                        assert!(*a <= 1000 && *b <= 1000);
                    }
                });
            }
            for i in 1..=1000u64 {
                cell.store(Arc::new(i));
            }
        });
        assert_eq!(*cell.load(), 1000);
    }
}
