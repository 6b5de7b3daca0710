//! Start-up tuning of the C allocator.
//!
//! The tail sampler holds ten seconds of traffic as request buffers that are
//! allocated on receiver threads and freed on whichever thread sends them on.
//! glibc gives each thread its own arena and returns memory to the system per
//! arena, so buffers freed across threads leave the arenas fragmented: in the
//! full-chain bench (`benches/e2e.sh full-chain`, 150,000 spans/s, 30 s) peak
//! RSS was 1,030–1,060 MiB with the default arenas and 830–837 MiB with one,
//! at the same CPU-seconds per million spans (1.80–1.86 against 1.81–1.93).
//!
//! glibc also raises its mmap threshold each time a large mmapped block is
//! freed (up to 32 MiB), after which request bodies of several MiB come from
//! the heap and their pages stay resident once freed. A fixed threshold of
//! 1 MiB keeps every buffer that large in its own mapping, returned to the
//! system on free; smaller buffers (a 512-span export is ~240 KB) stay on
//! the heap's fast path.
//!
//! Fixing the mmap threshold also stops glibc from raising its trim
//! threshold with it, which then stays at 128 KiB: each time the top of the
//! heap held more than that free, glibc gave it back, and the next buffers
//! there faulted their pages in again. In the full chain at 150,000 spans/s
//! that was 34,000–90,000 page faults per 15 s (inflating held requests,
//! mostly); a trim threshold of 4 MiB or more brought it to ~3,000, and the
//! collector's CPU time over those 15 s from 2.9–3.9 s to 2.4–3.1 s, at the
//! same peak RSS. 8 MiB leaves room over that; it is at most 8 MiB more
//! resident once traffic stops, and `malloc_trim` still returns it.
//!
//! `memory_limiter` decides on the allocator's live bytes (`mallinfo2`) and
//! asks it to return free pages (`malloc_trim`) when RSS runs ahead of them.

/// Allocations at least this large get their own mapping.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Free bytes at the top of the heap glibc keeps rather than returns.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 8 << 20;

/// Limits glibc to one malloc arena and fixes its mmap and trim thresholds,
/// unless the operator set `MALLOC_ARENA_MAX` / `MALLOC_MMAP_THRESHOLD_` /
/// `MALLOC_TRIM_THRESHOLD_` themselves, which glibc then honours instead;
/// installs the hooks `memory_limiter` reads live bytes through.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    for (var, param, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 1),
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD,
        ),
    ] {
        if std::env::var_os(var).is_some() {
            continue;
        }
        // SAFETY: mallopt takes no pointers and only changes allocator
        // parameters; it runs first in main, before any other thread
        // exists, so no allocation races it. Its return value (1 on
        // success) carries no further duty: on failure glibc keeps its
        // defaults.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(param, value);
        }
    }
    pipeline::processors::memory_limiter::install_allocator_hooks(
        pipeline::processors::memory_limiter::AllocatorHooks {
            live: live_bytes,
            trim,
        },
    );
}

/// Bytes glibc has handed out and not had back: in-use heap chunks of
/// every arena plus mmapped blocks.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn live_bytes() -> u64 {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct by
    // value; glibc takes each arena's lock while it sums, so it is safe to
    // call from any thread at any time (glibc ≥ 2.33; bookworm has 2.36).
    #[allow(unsafe_code)]
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// Returns free heap pages to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes a size (bytes to keep at the top of the
    // heap) and no pointers; it locks each arena while it releases pages,
    // so any thread may call it at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators need no tuning; the limiter reads RSS alone there.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
