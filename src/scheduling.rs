//! How tripgate's own threads ask the kernel to schedule them. Two cores
//! are shared with the load generator (and in production with whatever
//! else runs beside us), so a decision is held up less by its own CPU work
//! than by waiting for a core after each hand-off between threads.
//!
//! - Threads on the decision path (actix workers, the audit writer) ask for
//!   a short EEVDF slice: a thread woken with a shorter slice gets a nearer
//!   deadline and preempts the one running (Linux 6.12+), instead of
//!   waiting up to the default slice (1.5 ms on two cores) per hand-off.
//! - Background threads nothing waits for (indexing) run at nice 19; one
//!   that holds a lock others may need (loading) runs as SCHED_BATCH.
//!
//! Both are requests: on a kernel that refuses them the thread runs as it
//! would have, and that is logged at debug level.

//! Linux only: elsewhere (a developer's Mac) these are no-ops.

#[cfg(target_os = "linux")]
pub use linux::{never_preempt, prefer_low_latency, yield_to_decisions};

#[cfg(target_os = "linux")]
mod linux {
    /// The slice a decision-path thread asks for (the kernel's minimum).
    const SHORT_SLICE_NS: u64 = 100_000;

    /// For a thread on the decision path; call it on that thread.
    pub fn prefer_low_latency() {
        // sched_setattr sets the nice value too: keep whatever the operator
        // started us with (`nice -n 5 tripgate serve`).
        // SAFETY: two system calls about this thread's own id.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let attr = libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            sched_flags: 0,
            sched_nice: nice,
            sched_priority: 0,
            sched_runtime: SHORT_SLICE_NS,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: `attr` is a valid sched_attr that outlives the call; pid 0 is
        // the calling thread; flags 0.
        let changed = unsafe {
            libc::syscall(
                libc::SYS_sched_setattr,
                0,
                &attr as *const libc::sched_attr,
                0,
            )
        };
        if changed != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "a short scheduling slice was refused; this thread keeps the default"
            );
        }
    }

    /// For a background thread nothing waits for; call it on that thread.
    pub fn yield_to_decisions() {
        // SAFETY: two system calls about this thread's own id; no memory is
        // shared with them.
        let changed = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
        };
        if changed != 0 {
            tracing::debug!("a background thread keeps normal priority");
        }
    }

    /// For a background thread that others may have to wait for (it holds a
    /// lock): SCHED_BATCH keeps its fair share of the CPU, so it cannot starve
    /// while holding the lock, but it never preempts a thread on waking.
    /// Unlike raising a nice-19 thread back to 0, this needs no privilege.
    pub fn never_preempt() {
        // SAFETY: a system call about the calling thread (pid 0) with a
        // valid, live sched_param.
        let changed = unsafe {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param)
        };
        if changed != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "a background thread keeps the default scheduling policy"
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn prefer_low_latency() {}

#[cfg(not(target_os = "linux"))]
pub fn yield_to_decisions() {}

#[cfg(not(target_os = "linux"))]
pub fn never_preempt() {}
