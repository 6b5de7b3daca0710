//! Start-up tuning of the C allocator.
//!
//! The tail sampler holds ten seconds of traffic as request buffers that are
//! allocated on receiver threads and freed on whichever thread sends them on.
//! glibc gives each thread its own arena and returns memory to the system per
//! arena, so buffers freed across threads leave the arenas fragmented: in the
//! full-chain bench (`benches/e2e.sh full-chain`, 150,000 spans/s, 30 s) peak
//! RSS was 1,030–1,060 MiB with the default arenas and 830–837 MiB with one,
//! at the same CPU-seconds per million spans (1.80–1.86 against 1.81–1.93).

/// Limits glibc to one malloc arena unless the operator set
/// `MALLOC_ARENA_MAX` themselves, which glibc then honours instead.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt takes no pointers and only changes allocator
    // parameters; it runs first in main, before any other thread exists, so
    // no allocation races it. Its return value (1 on success) carries no
    // further duty: on failure glibc keeps its defaults.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Other allocators need no tuning.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
