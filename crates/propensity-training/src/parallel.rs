//! Running independent fits on every core: a tiny scoped work queue.
//!
//! linfa-logistic fits one model on one thread (its matrix products are single-threaded
//! without BLAS), so the cores are used by running *different* fits at once: the outcomes and
//! the points of the regularization grid. Each job is a pure function of its index, so the
//! results are identical whatever the number of threads or the order jobs finish in; only
//! the wall time changes. `std::thread::scope` suffices: a handful of long jobs need no
//! work-stealing pool (rayon), and scoped threads may borrow the matrices.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// How many threads to use: `requested`, or every core the OS grants when it is 0.
pub(crate) fn thread_count(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Runs `job(i)` for `i` in `order` (every index in `0..order.len()` exactly once) on up to
/// `threads` threads and returns the results by index. Jobs are *started* in `order`, so
/// putting the longest first keeps the cores busy until the end (longest processing time
/// first). `started(i)` is called on the calling thread as each job starts, so it may be a
/// non-`Send` progress callback. A panicking job panics the caller, after the others end.
pub(crate) fn run_jobs<T: Send>(
    order: &[usize],
    threads: usize,
    job: impl Fn(usize) -> T + Sync,
    mut started: impl FnMut(usize),
) -> Vec<T> {
    let n = order.len();
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    if threads <= 1 || n <= 1 {
        for &i in order {
            started(i);
            results[i] = Some(job(i));
        }
    } else {
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel::<usize>();
        let finished: Vec<Vec<(usize, T)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.min(n))
                .map(|_| {
                    let tx = tx.clone();
                    let (next, job) = (&next, &job);
                    scope.spawn(move || {
                        let mut done = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&i) = order.get(k) else { break };
                            // The receiver lives until every worker has ended.
                            let _ = tx.send(i);
                            done.push((i, job(i)));
                        }
                        done
                    })
                })
                .collect();
            // The workers hold the only senders left: the loop ends when they all have.
            drop(tx);
            for i in rx {
                started(i);
            }
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for (i, r) in finished.into_iter().flatten() {
            results[i] = Some(r);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| unreachable!("every job index runs exactly once")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_by_index_whatever_the_threads() {
        let order = [3, 0, 2, 1, 4];
        for threads in [1, 2, 3, 8] {
            let mut seen = Vec::new();
            let out = run_jobs(&order, threads, |i| i * 10, |i| seen.push(i));
            assert_eq!(out, vec![0, 10, 20, 30, 40], "threads {threads}");
            seen.sort_unstable();
            assert_eq!(seen, vec![0, 1, 2, 3, 4], "threads {threads}");
        }
    }

    #[test]
    fn thread_count_honours_a_request() {
        assert_eq!(thread_count(3), 3);
        assert!(thread_count(0) >= 1);
    }
}
