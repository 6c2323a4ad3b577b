//! The thread pool of the local backend: a few threads kept at hand for the many short
//! parallel regions of a forward pass.
//!
//! A one-token step of the default model runs about 120 matrix multiplications of a few
//! tens of microseconds each. Waking a sleeping thread costs about as much (more in a
//! virtual machine), so a general-purpose pool that parks its threads between regions loses
//! most of what a second core could give. Here a thread that has finished its share watches
//! for the next region for a short while ([`SPIN`]) before it sleeps, so back-to-back regions
//! start at once, and a pool left idle still stops using the CPU almost immediately.
//!
//! Work is split into tasks claimed from a shared counter by whichever thread is free: the
//! calling thread works too, and never waits for a thread that has not started, so a pool
//! sharing its cores with other processes degrades to fewer threads instead of stalling. It
//! waits only for tasks already being run.
//!
//! This is one of the places the crate allows `unsafe` (the crate docs list them): the job a
//! region publishes borrows the caller's stack, and the pool guarantees (by counting the
//! threads inside a region) that no thread touches it after [`Pool::run`] returns.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an idle thread keeps watching for the next region before it sleeps.
const SPIN: Duration = Duration::from_micros(300);

/// A wait for other threads' tasks beyond twice the caller's own time per task and this
/// much counts as a stall (a thread taken off its core).
const STALL: Duration = Duration::from_micros(300);

/// Regions the caller runs alone after a first stall, and at most after repeated ones.
const MIN_PENALTY: u32 = 16;
const MAX_PENALTY: u32 = 4096;

/// A task of a region: `(task index, thread index)`, the thread index in `0..threads`.
type Task<'a> = dyn Fn(usize, usize) + Sync + 'a;

/// One region, on the stack of the thread that runs it.
struct Job<'a> {
    task: &'a Task<'a>,
    tasks: usize,
}

struct Shared {
    /// Bumped for every region; workers compare it with the last one they saw.
    epoch: AtomicU64,
    /// Whether the current region still takes threads.
    open: AtomicBool,
    /// The current region (null between regions).
    job: AtomicPtr<Job<'static>>,
    /// The next task index to hand out.
    next: AtomicUsize,
    /// Worker threads inside the current region.
    inside: AtomicUsize,
    /// Worker threads asleep (or about to be).
    sleepers: AtomicUsize,
    /// A task of the current region panicked on a worker.
    panicked: AtomicBool,
    stop: AtomicBool,
}

/// A fixed set of threads for running parallel regions; see the [module docs](self).
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Regions still to be run by the caller alone, after a region waited long for a thread
    /// that other processes kept off its core.
    solo: Cell<u32>,
    /// How many regions the next such wait sends the caller alone for.
    penalty: Cell<u32>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads())
            .finish()
    }
}

thread_local! {
    /// Set on a pool's worker threads, and on a caller while it runs tasks, so a region
    /// started from inside a task runs inline.
    static IN_REGION: Cell<bool> = const { Cell::new(false) };
}

impl Pool {
    /// A pool of `threads` threads in all: the caller of [`run`](Self::run) and
    /// `threads - 1` workers.
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            open: AtomicBool::new(false),
            job: AtomicPtr::new(ptr::null_mut()),
            next: AtomicUsize::new(0),
            inside: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::new(),
            solo: Cell::new(0),
            penalty: Cell::new(MIN_PENALTY),
        };
        for i in 1..threads.max(1) {
            let shared = Arc::clone(&pool.shared);
            let handle = thread::Builder::new()
                .name(format!("any-local-{i}"))
                .spawn(move || worker(&shared, i))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Threads that run a region's tasks, the caller included.
    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `task(i, thread)` once for every `i` in `0..tasks`, spread over the pool's
    /// threads, and returns when all have run. `thread` is in `0..self.threads()` and no two
    /// tasks with the same `thread` run at once, so it can index per-thread scratch space.
    ///
    /// A panic in a task is raised again here, after every other thread has left the region.
    ///
    /// When the cores are shared with other busy processes, a thread of the pool can be taken
    /// off its core in the middle of a task, and the region then waits for it to be scheduled
    /// again (milliseconds). After such a wait the caller runs the next regions alone, for
    /// longer each time it happens again, so an oversubscribed machine costs about what one
    /// thread would.
    pub(crate) fn run(&self, tasks: usize, task: &(dyn Fn(usize, usize) + Sync)) {
        if tasks <= 1 || self.workers.is_empty() || IN_REGION.with(Cell::get) {
            (0..tasks).for_each(|i| task(i, 0));
            return;
        }
        if self.solo.get() > 0 {
            self.solo.set(self.solo.get() - 1);
            (0..tasks).for_each(|i| task(i, 0));
            return;
        }
        let sh = &*self.shared;
        let job = Job { task, tasks };
        sh.panicked.store(false, SeqCst);
        sh.next.store(0, SeqCst);
        sh.job.store(
            ptr::from_ref(&job).cast::<Job<'static>>().cast_mut(),
            SeqCst,
        );
        sh.epoch.fetch_add(1, SeqCst);
        sh.open.store(true, SeqCst);
        if sh.sleepers.load(SeqCst) > 0 {
            for w in &self.workers {
                w.thread().unpark();
            }
        }
        // Closes the region even if a task panics here: the job lives on this stack.
        struct Close<'a>(&'a Shared);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                let sh = self.0;
                sh.open.store(false, SeqCst);
                let mut spins = 0u32;
                while sh.inside.load(SeqCst) > 0 {
                    backoff(&mut spins);
                }
                sh.job.store(ptr::null_mut(), SeqCst);
                IN_REGION.with(|w| w.set(false));
            }
        }
        let close = Close(sh);
        IN_REGION.with(|w| w.set(true));
        let start = Instant::now();
        let mine = claim(sh, &job, 0);
        let own = start.elapsed();
        drop(close);
        let waited = start.elapsed() - own;
        // A wait well past the length of a task means a task's thread was not running.
        let per_task = own / u32::try_from(mine.max(1)).unwrap_or(u32::MAX);
        if waited > per_task * 2 + STALL {
            self.solo.set(self.penalty.get());
            self.penalty.set((self.penalty.get() * 2).min(MAX_PENALTY));
        } else {
            self.penalty.set(MIN_PENALTY);
        }
        if sh.panicked.swap(false, SeqCst) {
            resume_unwind(Box::new(
                "a task of the local backend's thread pool panicked",
            ));
        }
    }

    /// Runs `f(i, chunk, thread)` for each `chunk`-long piece of `data` (the last may be
    /// shorter), `i` counting the pieces, spread over the pool's threads as [`run`](Self::run).
    pub(crate) fn for_each_chunk<T: Send>(
        &self,
        data: &mut [T],
        chunk: usize,
        f: impl Fn(usize, &mut [T], usize) + Sync,
    ) {
        assert!(chunk > 0, "chunks hold at least one element");
        let len = data.len();
        let base = SendPtr(data.as_mut_ptr());
        self.run(len.div_ceil(chunk), &|i, thread| {
            let start = i * chunk;
            let n = chunk.min(len - start);
            // SAFETY: `run` runs every task index exactly once, so the pieces handed out are
            // disjoint and each inside `data`, which stays mutably borrowed until it returns.
            let piece = unsafe { std::slice::from_raw_parts_mut(base.at(start), n) };
            f(i, piece, thread);
        });
    }
}

/// A pointer that may cross to the pool's threads (they use disjoint parts of what it points
/// into).
struct SendPtr<T>(*mut T);

impl<T> SendPtr<T> {
    /// The pointer `i` elements on. A method, so closures capture the whole `SendPtr`.
    fn at(&self, i: usize) -> *mut T {
        // SAFETY: callers pass offsets inside the slice the pointer came from.
        unsafe { self.0.add(i) }
    }
}

// SAFETY: the pointer is only dereferenced for disjoint pieces, one task each, while the
// slice it comes from is mutably borrowed by the call that runs the tasks.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        for w in &self.workers {
            w.thread().unpark();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Runs tasks of `job` until none is left; returns how many it ran.
fn claim(sh: &Shared, job: &Job<'_>, thread: usize) -> usize {
    let mut ran = 0;
    loop {
        let i = sh.next.fetch_add(1, SeqCst);
        if i >= job.tasks {
            return ran;
        }
        (job.task)(i, thread);
        ran += 1;
    }
}

/// Waits a little longer each call: pauses for the first [`PATIENCE`] calls (a task being
/// finished on another core), then yields the core (to a thread that holds what we wait for,
/// if it shares our core).
fn backoff(spins: &mut u32) {
    if *spins < PATIENCE {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
    *spins = spins.saturating_add(1);
}

/// Pauses before [`backoff`] starts yielding: some tens of microseconds.
const PATIENCE: u32 = 1 << 10;

fn worker(sh: &Shared, index: usize) {
    IN_REGION.with(|w| w.set(true));
    let mut seen = sh.epoch.load(SeqCst);
    loop {
        // Watch for the next region, then sleep.
        let started = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let e = sh.epoch.load(SeqCst);
            if e != seen || sh.stop.load(SeqCst) {
                break e;
            }
            spins += 1;
            if spins.is_multiple_of(128) && started.elapsed() > SPIN {
                sh.sleepers.fetch_add(1, SeqCst);
                while sh.epoch.load(SeqCst) == seen && !sh.stop.load(SeqCst) {
                    thread::park();
                }
                sh.sleepers.fetch_sub(1, SeqCst);
                spins = 0;
                continue;
            }
            std::hint::spin_loop();
        };
        if sh.stop.load(SeqCst) {
            return;
        }
        seen = epoch;
        // Enter, then check that the region is still the one we saw and still open: the
        // caller closes it before waiting for `inside` to reach zero, so a thread that gets
        // in here is counted before the job can go away.
        sh.inside.fetch_add(1, SeqCst);
        if sh.open.load(SeqCst) && sh.epoch.load(SeqCst) == epoch {
            let job = sh.job.load(SeqCst);
            // SAFETY: the region is open and we are counted inside it, so the caller of
            // `run` is still waiting and the job on its stack is alive.
            let job = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| claim(sh, job, index))).is_err() {
                sh.panicked.store(true, SeqCst);
            }
        }
        sh.inside.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_exactly_once() {
        for threads in [1, 2, 3, 5] {
            let pool = Pool::new(threads).unwrap();
            for tasks in [0, 1, 2, 7, 64, 1000] {
                let counts: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(0)).collect();
                pool.run(tasks, &|i, t| {
                    assert!(t < threads);
                    counts[i].fetch_add(1, SeqCst);
                });
                assert!(
                    counts.iter().all(|c| c.load(SeqCst) == 1),
                    "{threads} {tasks}"
                );
            }
        }
    }

    #[test]
    fn many_short_regions_in_a_row() {
        let pool = Pool::new(2).unwrap();
        let mut data = vec![0u64; 1000];
        for round in 0..20_000u64 {
            pool.for_each_chunk(&mut data, 37, |i, piece, _| {
                for (j, v) in piece.iter_mut().enumerate() {
                    *v += (i * 37 + j) as u64 + round;
                }
            });
        }
        let rounds: u64 = (0..20_000).sum();
        for (j, &v) in data.iter().enumerate() {
            assert_eq!(v, j as u64 * 20_000 + rounds);
        }
    }

    #[test]
    fn regions_after_the_workers_fell_asleep() {
        let pool = Pool::new(3).unwrap();
        for _ in 0..5 {
            thread::sleep(SPIN * 4);
            let hits = AtomicUsize::new(0);
            pool.run(100, &|_, _| {
                hits.fetch_add(1, SeqCst);
            });
            assert_eq!(hits.load(SeqCst), 100);
        }
    }

    #[test]
    fn a_panicking_task_is_raised_in_the_caller_and_the_pool_still_works() {
        let pool = Pool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(64, &|i, _| {
                if i == 40 {
                    panic!("task 40");
                }
            })
        }));
        assert!(r.is_err());
        let hits = AtomicUsize::new(0);
        pool.run(10, &|_, _| {
            hits.fetch_add(1, SeqCst);
        });
        assert_eq!(hits.load(SeqCst), 10);
    }

    #[test]
    fn after_a_stalled_region_the_caller_runs_the_next_ones_alone() {
        let pool = Pool::new(2).unwrap();
        for _ in 0..100 {
            // A task that lands on the worker stands for a thread taken off its core.
            let on_worker = AtomicBool::new(false);
            pool.run(4, &|_, t| {
                if t == 0 {
                    thread::sleep(Duration::from_micros(200));
                } else {
                    on_worker.store(true, SeqCst);
                    thread::sleep(Duration::from_millis(20));
                }
            });
            if on_worker.load(SeqCst) {
                for _ in 0..MIN_PENALTY {
                    pool.run(8, &|_, t| {
                        assert_eq!(t, 0, "a worker ran a task while solo")
                    });
                }
                return;
            }
        }
        panic!("the worker never took a task");
    }

    #[test]
    fn per_thread_indices_are_never_shared_at_once() {
        let pool = Pool::new(3).unwrap();
        let busy: Vec<AtomicBool> = (0..3).map(|_| AtomicBool::new(false)).collect();
        pool.run(500, &|_, t| {
            assert!(
                !busy[t].swap(true, SeqCst),
                "thread index {t} used twice at once"
            );
            std::hint::black_box((0..200).sum::<u32>());
            busy[t].store(false, SeqCst);
        });
    }
}
