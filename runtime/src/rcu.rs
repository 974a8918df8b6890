//! Read-copy-update cells for the live operation slots: what makes a hot-reloadable call as
//! cheap as a pinned one.
//!
//! A reader (a call through a `LiveOp` or a compiled expression) marks its thread as "inside"
//! by storing the process's grace-period counter into its thread's mark (a plain move on x86)
//! behind a compiler fence, then loads the cell's pointer, and stores 0 when it leaves; no
//! lock, no allocation, no reference count and no shared cache line is written. A writer (a
//! reload) swaps the pointer, raises the counter and waits for a grace period: after a
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` system call, which makes every thread of the
//! process execute a full memory barrier, every reader that could still see the old value is
//! one whose mark held a counter older than the writer's at that moment; the writer waits until
//! each of those has left, then drops the old value (which may unload a library). This is the
//! "memb" flavour of userspace RCU, with liburcu's 64-bit counter. Where `membarrier` is unavailable, readers use a real fence instead
//! (slower, same guarantees). A reader stuck in a plugin for longer than
//! [`GRACE_WAIT`] does not block the writer: the old value is handed to a reclaimer thread that
//! drops it once the reader has left.
//!
//! Its `unsafe` code is the pointer hand-over of [`RcuCell`] and the membarrier system call;
//! the other modules with `unsafe` are the boundary ones: in this crate `memory`, `trust`'s
//! system calls and `process::sys`; in `calc-host` `loader`, `services`, `isolation::proxy`
//! and `capi`.
//!
//! # Checking the protocol
//!
//! The protocol (a reader's `Reader::enter` and `Reader::leave`, the writer's swap and
//! `Domain::synchronize`) is written against the small `sync` module, which is `std` in every
//! normal build and [`loom`](https://docs.rs/loom)'s model-checked replacements in a test build
//! with `--cfg loom`. The `loom_tests` explore every interleaving (within a preemption bound) of
//! readers and writers on a private `Domain`:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p calc-host --lib --release rcu::loom_tests
//! ```
//!
//! (`LOOM_MAX_PREEMPTIONS=N`, 3 by default, widens the search; `xtask/tests/loom.rs` runs the
//! same tests, in the debug profile, as part of `cargo test`.) What loom cannot model stays
//! outside the checked code: the process-wide statics, the thread-local registration,
//! `membarrier` (a system call that runs a barrier on other threads: loom only knows fences and
//! atomics, so the loom build models the fallback in which readers execute a real `SeqCst`
//! fence), the deadline of [`GRACE_WAIT`] and the reclaimer thread.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::compiler_fence;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sync::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// The synchronisation primitives the protocol uses: `std`'s, or loom's in a test build with
/// `--cfg loom` (values stored in cells stay `std::sync::Arc`s: they are the cell's API).
mod sync {
    #[cfg(all(test, loom))]
    pub(super) use loom::sync::{
        atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    };
    #[cfg(not(all(test, loom)))]
    pub(super) use std::sync::{
        atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    };
}

/// How long a writer waits for readers before handing the old value to the reclaimer thread.
pub const GRACE_WAIT: Duration = Duration::from_millis(50);

/// [`Reader::ctr`] outside any read-side section.
const OUTSIDE: u64 = 0;

/// One reading thread's state.
struct Reader {
    /// [`OUTSIDE`], or inside a section: this reader's copy of the grace-period counter
    /// ([`Reader::gp`]) as it was when the outermost section began. Written only by its thread.
    ctr: AtomicU64,
    /// This reader's copy of the domain's grace-period counter ([`Domain::gp`]), raised by
    /// every writer before its barrier: on the line the fast path touches anyway, so a section
    /// reads no shared line (and, in a position-independent program, no address table) to
    /// take its mark.
    gp: AtomicU64,
    /// Copy of the process-wide membarrier flag, next to `ctr` so the fast path reads one line.
    membarrier: bool,
    /// Set when the thread has exited; it can no longer be inside a section.
    dead: AtomicBool,
}

impl Reader {
    /// Marks this thread inside a read-side section; returns what
    /// [`Reader::leave`] needs: 1 for an outermost section, 0 for one nested in another
    /// section of this thread (whose mark already protects it).
    ///
    /// A reader stores only the domain's counter and a constant, never a value computed from
    /// its previous store, so a loop of sections carries no dependency from one section's last
    /// store to the next one's first (a store-to-load forwarding each time); the counter tells
    /// a writer one section from the next (liburcu's scheme). The nesting test reads this
    /// thread's own mark, but only to branch, which the processor predicts.
    ///
    /// The model checks' entry: they run readers with fences (`membarrier` is beyond loom),
    /// whereas every reader a program registers has `membarrier` and enters through
    /// [`Reader::enter_outermost`] (from `Section` and [`RcuCell::read`]), the same steps with
    /// a compiler fence for the real one.
    #[cfg(all(test, loom))]
    fn enter(&self) -> u64 {
        if self.ctr.load(Ordering::Relaxed) != OUTSIDE {
            return 0;
        }
        self.mark();
        if self.membarrier {
            // The writer's membarrier supplies the StoreLoad barrier: only keep the compiler
            // from moving the pointer load above the store.
            compiler_fence(Ordering::SeqCst);
        } else {
            // Pairs with the writer's fence in `global_barrier`: either this thread's next
            // pointer load sees the writer's swap, or the writer sees the mark.
            fence(Ordering::SeqCst);
        }
        1
    }

    /// Stores the mark of an outermost section.
    #[inline(always)]
    fn mark(&self) {
        // Acquire: a reader that sees a writer's raise sees the swap made before it, so its
        // pointer load returns the new value (and the writer need not wait for it).
        let snapshot = self.gp.load(Ordering::Acquire);
        // Release (a plain store on x86, like Relaxed): a writer that reads this mark must also
        // see everything this thread did in its previous section, which ended with a release
        // store of its own that this one overwrites (found by `loom_tests`).
        self.ctr.store(snapshot, Ordering::Release);
    }

    /// [`Reader::enter`] for a thread outside any section whose writers use `membarrier`
    /// (every reader [`RcuCell::read`] sees: only such readers are registered for threads);
    /// leave with `leave(1)`.
    #[inline(always)]
    fn enter_outermost(&self) {
        debug_assert!(self.membarrier && self.ctr.load(Ordering::Relaxed) == OUTSIDE);
        self.mark();
        // As in `enter`.
        compiler_fence(Ordering::SeqCst);
    }

    /// Ends the section [`Reader::enter`] opened, given what it returned.
    #[inline]
    fn leave(&self, outermost: u64) {
        if outermost != 0 {
            // Release: every read of the old value happens before a writer sees us leave.
            self.ctr.store(OUTSIDE, Ordering::Release);
        }
    }
}

/// A set of readers and the writers' side of the protocol over them. The process has one
/// ([`DOMAIN`]); the loom tests make their own.
struct Domain {
    /// Every reader that ever registered (pruned of dead ones by writers).
    readers: sync::Mutex<Vec<sync::Arc<Reader>>>,
    /// Readers without a registered `Reader` (threads being torn down, or every thread of a
    /// process without `membarrier`): counted here.
    fallback: AtomicUsize,
    /// The grace-period counter: odd, never 0, raised by 2 by each writer's wait. A reader
    /// inside holds the value it had when its section began; one that holds a value older than
    /// a writer's increment may see the value that writer swapped out.
    gp: AtomicU64,
}

impl Domain {
    #[cfg(not(all(test, loom)))]
    const fn new() -> Self {
        Domain {
            readers: sync::Mutex::new(Vec::new()),
            fallback: AtomicUsize::new(0),
            gp: AtomicU64::new(1),
        }
    }

    // loom's primitives have no `const fn new` (they belong to one model execution).
    #[cfg(all(test, loom))]
    fn new() -> Self {
        Domain {
            readers: sync::Mutex::new(Vec::new()),
            fallback: AtomicUsize::new(0),
            gp: AtomicU64::new(1),
        }
    }

    /// A new reader in this domain; `membarrier` says whether writers' barriers are
    /// `membarrier` system calls (see `global_barrier`).
    fn register(&self, membarrier: bool) -> sync::Arc<Reader> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        // Under the lock writers raise copies under: a writer raises this copy, or this load
        // sees its raise of the domain's counter (and so its swap: SeqCst on both sides).
        let reader = sync::Arc::new(Reader {
            ctr: AtomicU64::new(OUTSIDE),
            gp: AtomicU64::new(self.gp.load(Ordering::SeqCst)),
            membarrier,
            dead: AtomicBool::new(false),
        });
        readers.push(sync::Arc::clone(&reader));
        reader
    }

    /// Enters a read-side section without a registered reader (slow; counted globally).
    fn enter_fallback(&self) {
        self.fallback.fetch_add(1, Ordering::SeqCst);
        // As in `Reader::enter`: the count's increment and the pointer load that follows are
        // ordered against the writer's barrier only by a fence (a SeqCst read-modify-write
        // orders the count, not the later Acquire load of the pointer; found by `loom_tests`).
        fence(Ordering::SeqCst);
    }

    /// Leaves a section [`Domain::enter_fallback`] opened.
    fn leave_fallback(&self) {
        self.fallback.fetch_sub(1, Ordering::SeqCst);
    }

    /// Waits until no reader can still see a value swapped out before the call. `keep_waiting`
    /// runs each time a reader is still inside (it backs off), and returns false to give up,
    /// making this return false.
    fn synchronize(&self, mut keep_waiting: impl FnMut() -> bool) -> bool {
        // SeqCst, after the caller's swap: a reader whose section takes this value (or a later
        // one) also sees the swap; a reader with an older value may not.
        let target = self.gp.fetch_add(2, Ordering::SeqCst) + 2;
        let old = |r: &Reader| {
            let c = r.ctr.load(Ordering::Acquire);
            c != OUTSIDE && c < target
        };
        let inside: Vec<sync::Arc<Reader>> = {
            let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            readers.retain(|r| !r.dead.load(Ordering::Acquire));
            // Each reader's copy, before the barrier: a section that begins after it reads
            // `target` or later. A maximum, as writers may get here out of order.
            for r in readers.iter() {
                r.gp.fetch_max(target, Ordering::AcqRel);
            }
            global_barrier();
            readers
                .iter()
                .filter(|r| old(r))
                .map(sync::Arc::clone)
                .collect()
        };
        // A reader that left and entered again took a counter of `target` or later (after the
        // barrier above, its loads see the increment), so "older than target" ends once the
        // section the barrier saw has ended.
        for r in inside {
            while old(&r) && !r.dead.load(Ordering::Acquire) {
                if !keep_waiting() {
                    return false;
                }
            }
        }
        while self.fallback.load(Ordering::SeqCst) != 0 {
            if !keep_waiting() {
                return false;
            }
        }
        true
    }
}

/// The process's readers.
#[cfg(not(all(test, loom)))]
static DOMAIN: Domain = Domain::new();
#[cfg(all(test, loom))]
loom::lazy_static! {
    static ref DOMAIN: Domain = Domain::new();
}

/// Whether `membarrier` is registered for this process (readers then need no fence). Decided
/// when the first cell is created, before any reader of any cell exists.
static MEMBARRIER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn init_membarrier() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| MEMBARRIER.store(register_membarrier(), Ordering::SeqCst));
}

#[inline]
fn membarrier_ready() -> bool {
    MEMBARRIER.load(Ordering::Relaxed)
}

#[cfg(all(target_os = "linux", not(all(test, loom))))]
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

/// No `membarrier`: readers fence. Also the loom build's choice, since loom cannot model a
/// barrier that one thread makes others execute.
#[cfg(not(all(target_os = "linux", not(all(test, loom)))))]
fn register_membarrier() -> bool {
    false
}

/// Makes every thread of the process execute a full memory barrier (or, without membarrier,
/// executes one here: readers then fence on their side).
fn global_barrier() {
    #[cfg(all(target_os = "linux", not(all(test, loom))))]
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

struct Registration(sync::Arc<Reader>);

impl Registration {
    fn new() -> Self {
        init_membarrier();
        Registration(DOMAIN.register(membarrier_ready()))
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
    // Without membarrier a registered reader would have to fence in every section; the
    // global count does that too, so such a process registers none, and the fast path of
    // `RcuCell::read` can leave the fence out. (Decided before the first cell existed.)
    if !membarrier_ready() {
        return std::ptr::null();
    }
    let r = OWNER
        .try_with(|o| sync::Arc::as_ptr(&o.0))
        .unwrap_or(std::ptr::null());
    let _ = LOCAL.try_with(|l| l.reader.set(r));
    r
}

/// An open read-side section; the value read under it stays valid while it lives.
struct Section {
    /// This thread's reader when this section is its outermost one (it leaves on drop); NULL
    /// for a nested section (nothing to do) or a counted one (`counted`).
    reader: *const Reader,
    /// Whether the section is in the global fallback count.
    counted: bool,
    _not_send: PhantomData<*const ()>,
}

impl Section {
    #[inline]
    fn enter() -> Section {
        let reader = LOCAL.with(|local| local.reader.get());
        if reader.is_null() {
            return Self::enter_unregistered();
        }
        // SAFETY: `reader` points to this thread's registered `Reader`, kept alive by the `OWNER`
        // registration (and the global list) for the life of the thread.
        let r = unsafe { &*reader };
        if r.ctr.load(Ordering::Relaxed) != OUTSIDE {
            // Nested: the outer section's mark protects this one.
            return Section {
                reader: std::ptr::null(),
                counted: false,
                _not_send: PhantomData,
            };
        }
        r.enter_outermost();
        Section {
            reader,
            counted: false,
            _not_send: PhantomData,
        }
    }

    /// The first section of a thread (which registers it), or one on a thread that cannot
    /// have a reader (being torn down, or a process without `membarrier`).
    #[cold]
    #[inline(never)]
    fn enter_unregistered() -> Section {
        let reader = register_reader();
        if reader.is_null() {
            DOMAIN.enter_fallback();
            return Section {
                reader,
                counted: true,
                _not_send: PhantomData,
            };
        }
        // SAFETY: as in `enter`; a thread's first section is its outermost.
        unsafe { &*reader }.enter_outermost();
        Section {
            reader,
            counted: false,
            _not_send: PhantomData,
        }
    }
}

impl Drop for Section {
    #[inline]
    fn drop(&mut self) {
        if !self.reader.is_null() {
            // SAFETY: as in `enter`.
            unsafe { &*self.reader }.leave(1);
        } else if self.counted {
            DOMAIN.leave_fallback();
        }
    }
}

/// Waits until no reader can still see a value retired before the call; gives up after
/// `limit`, returning false.
fn synchronize(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut spins = 0u32;
    DOMAIN.synchronize(|| {
        if Instant::now() >= deadline {
            return false;
        }
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
        true
    })
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
        let p = self.current();
        // SAFETY: `p` came from `Arc::into_raw` and is only released by `store`/`drop` after a
        // grace period, which waits for this section to end.
        let value = unsafe { &*p };
        RcuGuard {
            value,
            _section: section,
        }
    }

    /// Calls `f` with the current value, inside a read-side section that ends when `f`
    /// returns (or unwinds): what [`Self::load`] does, with the common case (an outermost
    /// section on a registered thread) compiled straight through, so that a hot call through a
    /// cell costs a few plain moves more than a pinned one (`docs/PERFORMANCE.md`). Nested
    /// sections and threads being torn down take [`Self::load`]'s path.
    #[inline(always)]
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let reader = LOCAL.with(|local| local.reader.get());
        // SAFETY: a non-null `reader` is this thread's registered `Reader` (see `Section`).
        if reader.is_null() || unsafe { &*reader }.ctr.load(Ordering::Relaxed) != 0 {
            return self.read_slow(f);
        }
        // SAFETY: as above.
        let reader = unsafe { &*reader };
        reader.enter_outermost();
        /// Leaves the section, also when `f` unwinds.
        struct Leave<'r>(&'r Reader);
        impl Drop for Leave<'_> {
            #[inline(always)]
            fn drop(&mut self) {
                self.0.leave(1);
            }
        }
        let _leave = Leave(reader);
        // SAFETY: as in `load`: `p` is the live `Arc` allocation the cell owns, released only
        // after a grace period, which waits for this section to end.
        f(unsafe { &*self.current() })
    }

    #[cold]
    #[inline(never)]
    fn read_slow<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.load())
    }

    /// A strong reference to the current value (for keeping it beyond a short read).
    pub fn load_full(&self) -> Arc<T> {
        let _section = Section::enter();
        let p = self.current();
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
        Retired(Some(Box::new(self.replace(value))))
    }
}

impl<T> RcuCell<T> {
    /// The current value's pointer; valid while the caller's read-side section is open.
    #[inline]
    fn current(&self) -> *const T {
        // Acquire: the value's contents, written before the writer's swap, are visible.
        self.ptr.load(Ordering::Acquire)
    }

    /// Swaps in `value` and returns the old one, which readers may still be using: the caller
    /// drops it only after a grace period.
    fn replace(&self, value: Arc<T>) -> Arc<T> {
        let old = self
            .ptr
            .swap(Arc::into_raw(value).cast_mut(), Ordering::AcqRel);
        // SAFETY: `old` came from `Arc::into_raw` and was owned by the cell.
        unsafe { Arc::from_raw(old) }
    }
}

impl<T> Drop for RcuCell<T> {
    fn drop(&mut self) {
        // No reader can be inside: they borrow the cell, and we have it exclusively (so the
        // last swap happens before this load whatever its ordering).
        let p = self.ptr.load(Ordering::Relaxed);
        // SAFETY: the pointer came from `Arc::into_raw` and the cell owned it.
        drop(unsafe { Arc::from_raw(p) });
    }
}

impl<T: std::fmt::Debug + Send + Sync + 'static> std::fmt::Debug for RcuCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RcuCell").field(&*self.load()).finish()
    }
}

#[cfg(all(test, not(loom)))]
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

/// Model checks of the protocol (see "Checking the protocol" above for the command). Each test
/// runs a few threads on a private [`Domain`] and an [`RcuCell`] whose values record, in a loom
/// `UnsafeCell` per value, being published and being freed: loom fails a test when a reader's
/// use of a value is not ordered after its publication or not ordered before its drop, when a
/// value is leaked (loom's `Arc`) or dropped twice, and when a writer's wait never ends.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::sync::{Arc as LoomArc, AtomicUsize, Mutex, Ordering};
    use super::{Domain, RcuCell, Reader};
    use loom::cell::UnsafeCell;
    use loom::thread;
    use std::sync::Arc;

    /// A value's state, as its slot records it.
    const UNPUBLISHED: u8 = 0;
    const LIVE: u8 = 1;
    const FREED: u8 = 2;

    /// What the test knows of one value: its state (written only through `with_mut`, so loom
    /// checks every read against it) and how often it was dropped.
    struct Slot {
        state: UnsafeCell<u8>,
        drops: AtomicUsize,
    }

    /// The slots of every value a test makes, indexed by value.
    struct Slots(Vec<Slot>);

    // SAFETY: the states are only accessed through loom's `with`/`with_mut`, which check every
    // access against the others and fail the test on a race (what these tests look for).
    unsafe impl Sync for Slots {}

    impl Slots {
        fn new(n: usize, live: usize) -> LoomArc<Slots> {
            LoomArc::new(Slots(
                (0..n)
                    .map(|i| Slot {
                        state: UnsafeCell::new(if i < live { LIVE } else { UNPUBLISHED }),
                        drops: AtomicUsize::new(0),
                    })
                    .collect(),
            ))
        }

        /// Marks value `id` published: called by its writer before the swap.
        fn publish(&self, id: usize) {
            // SAFETY: the pointer is valid for the closure; loom reports any access that races.
            self.0[id].state.with_mut(|s| unsafe { *s = LIVE });
        }

        /// Uses value `id` as a reader would: fails unless it was published and not freed.
        fn use_value(&self, id: usize) {
            // SAFETY: as in `publish`.
            let state = self.0[id].state.with(|s| unsafe { *s });
            assert_eq!(state, LIVE, "value {id} read while not live");
        }

        fn drops(&self, id: usize) -> usize {
            self.0[id].drops.load(Ordering::Relaxed)
        }
    }

    /// A value stored in the cell: dropping it frees its slot.
    struct Value {
        id: usize,
        slots: LoomArc<Slots>,
    }

    impl Drop for Value {
        fn drop(&mut self) {
            if std::thread::panicking() {
                // A check already failed: report that, not a second failure while unwinding.
                return;
            }
            let slot = &self.slots.0[self.id];
            // SAFETY: as in `Slots::publish`.
            slot.state.with_mut(|s| unsafe { *s = FREED });
            slot.drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `n` values whose first is in a new cell: the cell, the others (to be swapped in), the
    /// address of each value (to name the one a reader sees without dereferencing it: a broken
    /// protocol must fail the test, not read freed memory), and their slots.
    struct Fixture {
        cell: LoomArc<RcuCell<Value>>,
        values: Vec<Arc<Value>>,
        addresses: Vec<usize>,
        slots: LoomArc<Slots>,
    }

    impl Fixture {
        fn new(n: usize) -> Fixture {
            let slots = Slots::new(n, 1);
            let mut values: Vec<Arc<Value>> = (0..n)
                .map(|id| {
                    Arc::new(Value {
                        id,
                        slots: LoomArc::clone(&slots),
                    })
                })
                .collect();
            let addresses = values.iter().map(|v| Arc::as_ptr(v) as usize).collect();
            let first = values.remove(0);
            Fixture {
                cell: LoomArc::new(RcuCell::new(first)),
                values,
                addresses,
                slots,
            }
        }
    }

    /// Reads the cell inside an open section and uses the value; returns its id.
    fn read(cell: &RcuCell<Value>, addresses: &[usize], slots: &Slots) -> usize {
        let p = cell.current() as usize;
        let id = addresses
            .iter()
            .position(|&a| a == p)
            .expect("the cell holds one of the test's values");
        slots.use_value(id);
        id
    }

    /// A writer: publishes `value`, swaps it in, waits for a grace period, drops the old one.
    /// With several writers, `turn` makes them wait one at a time (see the two-writer test).
    fn write(
        domain: &Domain,
        cell: &RcuCell<Value>,
        slots: &Slots,
        value: Arc<Value>,
        turn: Option<&Mutex<()>>,
    ) {
        slots.publish(value.id);
        let old = cell.replace(value);
        let turn = turn.map(|t| t.lock().unwrap());
        // Never gives up: a wait that cannot end shows up as loom's "exceeded maximum number of
        // branches" failure.
        assert!(domain.synchronize(|| {
            thread::yield_now();
            true
        }));
        drop(turn);
        drop(old);
    }

    /// Runs `f` under loom with a preemption bound (`LOOM_MAX_PREEMPTIONS`, default 3).
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    /// A reader registered on its own thread; the caller's domain is shared.
    fn reader_of(domain: &Domain) -> LoomArc<Reader> {
        domain.register(false)
    }

    #[test]
    fn a_reader_never_sees_a_value_freed_while_its_section_is_open() {
        model(|| {
            let Fixture {
                cell,
                mut values,
                addresses,
                slots,
            } = Fixture::new(2);
            let domain = LoomArc::new(Domain::new());
            let reader = {
                let (cell, domain, slots, addresses) = (
                    LoomArc::clone(&cell),
                    LoomArc::clone(&domain),
                    LoomArc::clone(&slots),
                    addresses.clone(),
                );
                thread::spawn(move || {
                    let me = reader_of(&domain);
                    let exit = me.enter();
                    let id = read(&cell, &addresses, &slots);
                    // Still in the section: the value it read is still live.
                    slots.use_value(id);
                    me.leave(exit);
                })
            };
            write(&domain, &cell, &slots, values.remove(0), None);
            reader.join().unwrap();
            assert_eq!(slots.drops(0), 1, "the old value is dropped once");
            assert_eq!(slots.drops(1), 0, "the current value is not dropped");
            drop(cell);
            assert_eq!(slots.drops(1), 1);
        });
    }

    #[test]
    fn nested_sections_keep_the_outer_sections_value() {
        model(|| {
            let Fixture {
                cell,
                mut values,
                addresses,
                slots,
            } = Fixture::new(2);
            let domain = LoomArc::new(Domain::new());
            let me = reader_of(&domain);
            let reader = {
                let (cell, slots, addresses) = (
                    LoomArc::clone(&cell),
                    LoomArc::clone(&slots),
                    addresses.clone(),
                );
                thread::spawn(move || {
                    let outer = me.enter();
                    let first = read(&cell, &addresses, &slots);
                    let inner = me.enter();
                    read(&cell, &addresses, &slots);
                    me.leave(inner);
                    // The inner section ended, the outer one did not: its value is still live.
                    slots.use_value(first);
                    me.leave(outer);
                })
            };
            write(&domain, &cell, &slots, values.remove(0), None);
            reader.join().unwrap();
            assert_eq!((slots.drops(0), slots.drops(1)), (1, 0));
        });
    }

    #[test]
    fn two_writers_and_a_reader_free_each_old_value_once_and_never_under_the_reader() {
        model(|| {
            let Fixture {
                cell,
                values,
                addresses,
                slots,
            } = Fixture::new(3);
            let domain = LoomArc::new(Domain::new());
            let me = reader_of(&domain);
            let reader = {
                let (cell, slots, addresses) = (
                    LoomArc::clone(&cell),
                    LoomArc::clone(&slots),
                    addresses.clone(),
                );
                thread::spawn(move || {
                    let exit = me.enter();
                    let id = read(&cell, &addresses, &slots);
                    slots.use_value(id);
                    me.leave(exit);
                })
            };
            // The writers swap and drop concurrently but wait one at a time: with two
            // spinning threads loom also explores the unfair schedules in which they take turns
            // forever while the reader they wait for never runs, and gives up on the model.
            let turn = LoomArc::new(Mutex::new(()));
            let writers: Vec<_> = values
                .into_iter()
                .map(|value| {
                    let (cell, domain, slots, turn) = (
                        LoomArc::clone(&cell),
                        LoomArc::clone(&domain),
                        LoomArc::clone(&slots),
                        LoomArc::clone(&turn),
                    );
                    thread::spawn(move || write(&domain, &cell, &slots, value, Some(&turn)))
                })
                .collect();
            reader.join().unwrap();
            for w in writers {
                w.join().unwrap();
            }
            let current = read(&cell, &addresses, &slots);
            for id in 0..3 {
                let expected = usize::from(id != current);
                assert_eq!(slots.drops(id), expected, "drops of value {id}");
            }
            drop(cell);
            assert!((0..3).all(|id| slots.drops(id) == 1));
        });
    }

    #[test]
    fn a_reader_that_leaves_lets_the_writer_finish() {
        model(|| {
            let Fixture {
                cell,
                mut values,
                addresses,
                slots,
            } = Fixture::new(2);
            let domain = LoomArc::new(Domain::new());
            let me = reader_of(&domain);
            let reader = {
                let (cell, slots, addresses) = (
                    LoomArc::clone(&cell),
                    LoomArc::clone(&slots),
                    addresses.clone(),
                );
                thread::spawn(move || {
                    // Two sections in a row: the writer may see either one open, or neither.
                    for _ in 0..2 {
                        let exit = me.enter();
                        read(&cell, &addresses, &slots);
                        me.leave(exit);
                    }
                })
            };
            // `write` spins without a limit: it returns only if it sees the reader leave.
            write(&domain, &cell, &slots, values.remove(0), None);
            reader.join().unwrap();
            assert_eq!(slots.drops(0), 1);
        });
    }

    #[test]
    fn a_reader_without_a_registration_is_waited_for_too() {
        model(|| {
            let Fixture {
                cell,
                mut values,
                addresses,
                slots,
            } = Fixture::new(2);
            let domain = LoomArc::new(Domain::new());
            let reader = {
                let (cell, domain, slots, addresses) = (
                    LoomArc::clone(&cell),
                    LoomArc::clone(&domain),
                    LoomArc::clone(&slots),
                    addresses.clone(),
                );
                thread::spawn(move || {
                    domain.enter_fallback();
                    let id = read(&cell, &addresses, &slots);
                    slots.use_value(id);
                    domain.leave_fallback();
                })
            };
            write(&domain, &cell, &slots, values.remove(0), None);
            reader.join().unwrap();
            assert_eq!((slots.drops(0), slots.drops(1)), (1, 0));
        });
    }
}
