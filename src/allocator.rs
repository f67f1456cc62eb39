//! The global allocator of tidemark's binaries: jemalloc, with its unused
//! pages given back to the system within about a second.
//!
//! glibc's malloc and free were a quarter of tidemark's CPU under load (every
//! stanza is a tree of small allocations, parsed on one thread and handled on
//! another, and each answer is another tree); with jemalloc the same work
//! costs about a quarter less. The benchmark's baseline
//! (`tidemark-bench echo-component`) declares the same allocator, so that
//! its comparison measures tidemark's work and not the allocator.
//!
//! jemalloc keeps freed pages ("dirty") for reuse and returns them on a decay
//! schedule; left to itself it would do so only while allocating. A
//! background thread purges them on time even when tidemark is idle, and a
//! one-second decay keeps the resident set near what is in use (the store's
//! cache above all, `storage.cache_mb`).

pub use tikv_jemallocator::Jemalloc;

/// jemalloc's options (its `malloc_conf`), read before `main`.
pub const CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Makes jemalloc, with [`CONF`], the global allocator of the binary it is
/// invoked in (once, at the top level of the binary's root module).
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static GLOBAL: $crate::allocator::Jemalloc = $crate::allocator::Jemalloc;

        /// jemalloc reads its options from this symbol (`_rjem_` is the
        /// prefix tikv-jemalloc-sys gives jemalloc's names on Linux); a
        /// pointer to a C string, as jemalloc declares it.
        #[allow(non_upper_case_globals)]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        pub static malloc_conf: Option<&'static u8> = Some(&$crate::allocator::CONF[0]);
    };
}
