//! The thread pool of compiled models: `threads − 1` worker threads plus the calling thread run
//! the chunks of one parallel loop at a time.
//!
//! [`Pool::run`] gives each thread a home range of the tasks `[0, n)`: thread `t` of `T` (the
//! caller is thread 0) owns `[t·n/T, (t+1)·n/T)`. A thread claims contiguous chunks of its own
//! range first, then of the others' in turn, each through that range's atomic counter, a claim
//! taking 1/[`GUIDE`] of the range's tasks not yet claimed (at least one): large chunks first,
//! single tasks at the end, so that a thread waits at most about one task for the others
//! (guided scheduling), and returns when every task has run. Home ranges keep consecutive
//! loops over the same positions on the same thread, whose L2 holds what the previous loop
//! wrote there: with one counter for all, whichever thread claimed first took the first
//! chunk, and a small layer read half its input from the other core's cache (MobileNetV2 at
//! two threads 4.72 → 4.31 ms, dy-mobile 3.15 → 2.90 ms, on a Xeon whose cores share only
//! its L3). The caller participates;
//! with one thread, or when another thread is already running a loop on this pool (a shared
//! handle, a nested call), the whole range runs on the caller. Chunk boundaries never change results: generated tasks compute each output
//! element with the same instructions whatever range they are given.
//!
//! Status: the first non-zero status of the lowest failing chunk. A task stops at its first
//! failing index, and chunks below the lowest failing one all succeeded, so this is the status
//! of the lowest failing task index: the same for every thread count and schedule.
//!
//! No allocation after [`Pool::new`]: a loop publishes its job in atomics; workers sleep on a
//! condition variable between loops (after a short spin, since loops follow each other closely
//! during a run), and a loop only takes the lock and signals the condition variable (a system
//! call) when some worker has announced that it sleeps: during a run the workers spin, and a
//! model's hundred-odd loops then cost no system call each. Each claim counter packs a 32-bit
//! loop generation with the first unclaimed task of its range, so a worker that wakes late can
//! never claim a chunk of a later loop with an earlier loop's job (up to a wrap-around of 2³²
//! loops during one worker's stall, which is not a concern).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// A parallel task: runs indices `[begin, end)` with the loop's argument block; 0 or a status.
pub type TaskFn = extern "C" fn(args: *const *mut u8, begin: u64, end: u64) -> i32;

/// The most threads a pool runs on.
pub const MAX_THREADS: usize = 1 << 10;
/// A claim takes 1/GUIDE of its range's unclaimed tasks. Fixed chunks left one thread alone
/// at a loop's end for up to a chunk: with 4 per thread, a tenth of resnet18's 56×56 layers
/// (about 100 tasks); guided ones let the threads finish together.
const GUIDE: u64 = 2;
/// Spin iterations of an idle worker before it sleeps.
const SPIN: u32 = 1 << 14;

/// The job of the current loop, published by `next`'s release store.
struct Shared {
    task: AtomicUsize,
    args: AtomicUsize,
    n: AtomicU64,
    /// `generation << 32`: the current loop, published last.
    next: AtomicU64,
    /// Per thread, `generation << 32 | first unclaimed task` of its home range.
    homes: Box<[AtomicU64]>,
    /// Tasks finished in the current loop.
    done: AtomicU64,
    /// `begin << 32 | status as u32` of the lowest failing chunk, `u64::MAX` if none.
    fail: AtomicU64,
    /// Workers asleep or about to sleep on `cv` (under `wake`).
    sleepers: AtomicUsize,
    wake: Mutex<()>,
    cv: Condvar,
    stop: AtomicBool,
}

/// A pool of `threads − 1` workers; see the module contract.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    /// Held by the thread running a loop.
    busy: Mutex<()>,
    generation: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The first task of thread `t`'s home range in a loop of `n` tasks.
    fn home(&self, t: usize, n: u64) -> u64 {
        let threads = self.homes.len() as u64;
        // n < 2³², so the product fits.
        t as u64 * n / threads
    }

    /// As thread `me`, claims and runs chunks of generation `generation` until none is left:
    /// its home range's, then the next threads'.
    fn work(&self, generation: u64, me: usize) {
        let threads = self.homes.len();
        for h in (me..threads).chain(0..me) {
            if !self.work_range(generation, h) {
                return;
            }
        }
    }

    /// Claims and runs chunks of thread `h`'s home range until none is left: false when the
    /// loop is no longer generation `generation` (a late worker).
    fn work_range(&self, generation: u64, h: usize) -> bool {
        let counter = &self.homes[h];
        loop {
            let cur = counter.load(Ordering::Acquire);
            let begin = cur & 0xffff_ffff;
            if cur >> 32 != generation {
                return false;
            }
            let n = self.n.load(Ordering::Relaxed);
            let last = self.home(h + 1, n);
            if begin >= last {
                return true;
            }
            let end = begin + (last - begin).div_ceil(GUIDE);
            if counter
                .compare_exchange_weak(cur, cur - begin + end, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let task = self.task.load(Ordering::Relaxed);
            // SAFETY: `task` was stored from a `TaskFn` by `Pool::run` of this generation,
            // which has not returned: our chunk is not done yet.
            let task: TaskFn = unsafe { std::mem::transmute::<usize, TaskFn>(task) };
            let status = task(
                self.args.load(Ordering::Relaxed) as *const *mut u8,
                begin,
                end,
            );
            if status != 0 {
                self.fail
                    .fetch_min(begin << 32 | u64::from(status as u32), Ordering::AcqRel);
            }
            self.done.fetch_add(end - begin, Ordering::Release);
        }
    }
}

impl Pool {
    /// A pool running loops on `threads` threads (the caller and `threads − 1` workers; 0 is
    /// taken as 1, more than [`MAX_THREADS`] as that). Fails only when the system cannot start
    /// a thread.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let threads = threads.clamp(1, MAX_THREADS);
        let shared = Arc::new(Shared {
            task: AtomicUsize::new(0),
            args: AtomicUsize::new(0),
            n: AtomicU64::new(0),
            next: AtomicU64::new(0),
            homes: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            done: AtomicU64::new(0),
            fail: AtomicU64::new(u64::MAX),
            sleepers: AtomicUsize::new(0),
            wake: Mutex::new(()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::with_capacity(threads - 1),
            threads,
            busy: Mutex::new(()),
            generation: AtomicU64::new(0),
        };
        for i in 1..threads {
            let s = Arc::clone(&pool.shared);
            let h = std::thread::Builder::new()
                .name(format!("dync-worker-{i}"))
                .spawn(move || worker(&s, i))?;
            pool.workers.push(h);
        }
        Ok(pool)
    }

    /// The number of threads loops run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `task` over `[0, n)`; see the module contract for the split and the status.
    ///
    /// # Safety
    /// `task` may be called from several threads at once with `args` and disjoint ranges
    /// covering `[0, n)`; it must be safe to do so.
    pub unsafe fn run(&self, task: TaskFn, args: *const *mut u8, n: u64) -> i32 {
        if n == 0 {
            return 0;
        }
        // Task indices share the claim counter with the generation: 32 bits each.
        let guard = match self.busy.try_lock() {
            Ok(g) if self.threads > 1 && n > 1 && n <= u64::from(u32::MAX) => g,
            _ => return task(args, 0, n),
        };
        let s = &*self.shared;
        let generation = (self.generation.fetch_add(1, Ordering::Relaxed) + 1) & 0xffff_ffff;
        s.task.store(task as usize, Ordering::Relaxed);
        s.args.store(args as usize, Ordering::Relaxed);
        s.n.store(n, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        s.fail.store(u64::MAX, Ordering::Relaxed);
        for (t, home) in s.homes.iter().enumerate() {
            home.store(generation << 32 | s.home(t, n), Ordering::Relaxed);
        }
        // SeqCst with the sleepers' count (as the workers' announcement and recheck): either
        // a worker about to sleep sees this generation, or this sees it about to sleep.
        s.next.store(generation << 32, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _w = lock(&s.wake);
            s.cv.notify_all();
        }
        s.work(generation, 0);
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < n {
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        drop(guard);
        match s.fail.load(Ordering::Acquire) {
            u64::MAX => 0,
            f => (f & 0xffff_ffff) as u32 as i32,
        }
    }
}

/// Worker thread `me` (1 ..): runs its share of every loop published.
fn worker(s: &Shared, me: usize) {
    let mut seen = 0u32;
    loop {
        let mut spins = 0u32;
        let generation = loop {
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            let g = (s.next.load(Ordering::Acquire) >> 32) as u32;
            if g != seen {
                break g;
            }
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            // Announced before the recheck under the lock, so that a loop published after it
            // signals (see `Pool::run`) and one published before it is seen here.
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            let w = lock(&s.wake);
            let published = || (s.next.load(Ordering::SeqCst) >> 32) as u32 != seen;
            drop(
                s.cv.wait_while(w, |_| !published() && !s.stop.load(Ordering::Acquire))
                    .unwrap_or_else(PoisonError::into_inner),
            );
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            spins = 0;
        };
        seen = generation;
        s.work(u64::from(generation), me);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _w = lock(&self.shared.wake);
            self.shared.cv.notify_all();
        }
        for h in self.workers.drain(..) {
            // A worker only panics if a task does, and tasks are `extern "C"` (abort on
            // unwind), so there is nothing to report.
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// args[0]: *mut u32 counts per index; fails with index + 1 at indices ≥ args[1] as usize.
    extern "C" fn mark(args: *const *mut u8, begin: u64, end: u64) -> i32 {
        // SAFETY: the tests pass [counts (n u32s), fail-from as a pointer-sized integer].
        unsafe {
            let counts = *args as *const AtomicU64;
            let fail_from = *args.add(1) as u64;
            for i in begin..end {
                if i >= fail_from {
                    return i32::try_from(i + 1).unwrap_or(-1);
                }
                (*counts.add(i as usize)).fetch_add(1, Ordering::Relaxed);
            }
        }
        0
    }

    fn run(pool: &Pool, n: u64, fail_from: u64) -> (i32, Vec<u64>) {
        let counts: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
        let args = [counts.as_ptr() as *mut u8, fail_from as usize as *mut u8];
        // SAFETY: `mark` only touches disjoint counters through atomics.
        let st = unsafe { pool.run(mark, args.as_ptr(), n) };
        (
            st,
            counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
        )
    }

    #[test]
    fn every_index_runs_once_at_every_thread_count() {
        for threads in [1, 2, 3, 4] {
            let pool = Pool::new(threads).unwrap();
            for n in [0, 1, 2, 5, 17, 1000] {
                for _ in 0..20 {
                    let (st, counts) = run(&pool, n, u64::MAX);
                    assert_eq!(st, 0);
                    assert!(counts.iter().all(|&c| c == 1), "{threads} threads, n {n}");
                }
            }
        }
    }

    #[test]
    fn the_status_is_the_lowest_failing_index() {
        for threads in [1, 2, 3, 4] {
            let pool = Pool::new(threads).unwrap();
            for _ in 0..50 {
                assert_eq!(run(&pool, 100, 37).0, 38, "{threads} threads");
                assert_eq!(run(&pool, 100, 0).0, 1, "{threads} threads");
                assert_eq!(run(&pool, 100, 99).0, 100, "{threads} threads");
            }
        }
    }

    #[test]
    fn concurrent_callers_share_a_pool() {
        let pool = Pool::new(3).unwrap();
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..50 {
                        let (st, counts) = run(&pool, 64, u64::MAX);
                        assert_eq!(st, 0);
                        assert!(counts.iter().all(|&c| c == 1));
                    }
                });
            }
        });
    }

    /// The running thread's index: a worker's (1 ..), 63 for any other thread.
    fn thread_index() -> u64 {
        std::thread::current()
            .name()
            .and_then(|n| n.strip_prefix("dync-worker-"))
            .and_then(|i| i.parse().ok())
            .unwrap_or(63)
    }

    /// args[0]: *const AtomicU64 bit set of the threads (by [`thread_index`]) that ran
    /// tasks; each task sleeps 200 µs, long enough for a woken worker to claim some.
    extern "C" fn note_thread(args: *const *mut u8, begin: u64, end: u64) -> i32 {
        thread_local!(static ME: u64 = thread_index());
        // SAFETY: the test passes one AtomicU64.
        let seen = unsafe { &*(*args as *const AtomicU64) };
        for _ in begin..end {
            std::thread::sleep(std::time::Duration::from_micros(200));
            ME.with(|&me| seen.fetch_or(1 << me.min(63), Ordering::Relaxed));
        }
        0
    }

    /// args[0]: per task, an AtomicU64 set to the [`thread_index`] of the thread that ran
    /// it; each task sleeps 1 ms.
    extern "C" fn note_runner(args: *const *mut u8, begin: u64, end: u64) -> i32 {
        let me = thread_index();
        // SAFETY: the test passes one AtomicU64 per task.
        let ran = unsafe { *args as *const AtomicU64 };
        for i in begin..end {
            std::thread::sleep(std::time::Duration::from_millis(1));
            // SAFETY: i < n.
            unsafe { (*ran.add(i as usize)).store(me, Ordering::Relaxed) };
        }
        0
    }

    /// Thread t starts on its home range `[t·n/T, (t+1)·n/T)`, even when it wakes after the
    /// caller has started: the caller runs tasks 0 and n/4 (its first chunk and its second),
    /// worker 1 task n/2 (the caller reaches the worker's range only after its own 50 ms).
    /// With one counter for all, the worker's first chunk would start at n/4.
    #[test]
    fn each_thread_starts_on_its_home_range() {
        let pool = Pool::new(2).unwrap();
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let ran: Vec<AtomicU64> = (0..100).map(|_| AtomicU64::new(99)).collect();
            let args = [ran.as_ptr() as *mut u8];
            // SAFETY: `note_runner` only touches its tasks' atomics.
            assert_eq!(unsafe { pool.run(note_runner, args.as_ptr(), 100) }, 0);
            let who = |i: usize| ran[i].load(Ordering::Relaxed);
            assert_eq!((who(0), who(25), who(50)), (63, 63, 1));
        }
    }

    /// Workers that went to sleep between loops (a pause longer than their spin) are woken
    /// for the next loop: they run some of its tasks.
    #[test]
    fn sleeping_workers_wake_for_the_next_loop() {
        let pool = Pool::new(2).unwrap();
        for _ in 0..3 {
            assert_eq!(run(&pool, 100, u64::MAX).0, 0);
            std::thread::sleep(std::time::Duration::from_millis(100));
            let seen = AtomicU64::new(0);
            let args = [&seen as *const AtomicU64 as *mut u8];
            // SAFETY: `note_thread` only touches the atomic.
            assert_eq!(unsafe { pool.run(note_thread, args.as_ptr(), 200) }, 0);
            assert_eq!(
                seen.load(Ordering::Relaxed).count_ones(),
                2,
                "one thread ran the loop"
            );
        }
    }
}
