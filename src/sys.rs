//! The two calls into glibc's allocator that zkdns makes, and the only `unsafe` in the crate:
//! one malloc arena for the whole process, and handing freed heap back to the system after a
//! full read. Both are no-ops where the C library is not glibc.

#![allow(unsafe_code)]

/// One glibc malloc arena for the whole process: the query path does not allocate, so the
/// per-thread arenas glibc would make only hold memory (several MiB of RSS) for nothing. Call
/// it before any thread is started.
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called before any thread exists; M_ARENA_MAX only limits future arenas.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

/// Hands the heap that a full read used and freed back to the system: glibc keeps it
/// otherwise, and the stub would sit at its peak RSS (the old map, the new one and the reads).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
