// A send renders, encodes and frees tens of kilobytes a message on several
// threads; glibc's allocator was about 12% of a send's CPU (perf, bench/send.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sqlite_on_mimalloc();
    cartero::cli::main()
}

/// Points SQLite's allocator at mimalloc. SQLite allocates and frees a page
/// buffer per cached page and per journalled page; on glibc's malloc that
/// was about a fifth of a 1M-row SQLite import (perf: `_int_malloc`,
/// `unlink_chunk`, `malloc_consolidate`). Must run before SQLite initialises,
/// that is before the first connection opens; if it fails SQLite keeps its
/// default allocator, which is correct, only slower.
fn sqlite_on_mimalloc() {
    use libmimalloc_sys as mi;
    use libsqlite3_sys as ffi;
    use std::os::raw::{c_int, c_void};

    unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
        // SAFETY: plain allocation; SQLite never asks for a negative size.
        unsafe { mi::mi_malloc(n.max(0) as usize) }
    }
    unsafe extern "C" fn free(p: *mut c_void) {
        // SAFETY: `p` came from `malloc`/`realloc` above (or is null).
        unsafe { mi::mi_free(p) }
    }
    unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        // SAFETY: as for `free`.
        unsafe { mi::mi_realloc(p, n.max(0) as usize) }
    }
    unsafe extern "C" fn size(p: *mut c_void) -> c_int {
        // SAFETY: as for `free`; SQLite never allocates 2 GiB at once.
        unsafe { mi::mi_usable_size(p) as c_int }
    }
    unsafe extern "C" fn roundup(n: c_int) -> c_int {
        (n + 7) & !7
    }
    unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        ffi::SQLITE_OK
    }
    unsafe extern "C" fn shutdown(_: *mut c_void) {}

    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(malloc),
        xFree: Some(free),
        xRealloc: Some(realloc),
        xSize: Some(size),
        xRoundup: Some(roundup),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: called once, first thing in main, before any other thread or
    // connection exists; SQLite copies the struct into its configuration.
    let rc = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_MALLOC,
            &methods as *const ffi::sqlite3_mem_methods,
        )
    };
    if rc != ffi::SQLITE_OK {
        eprintln!("note: SQLite keeps its default allocator (sqlite3_config: {rc})");
    }
    // No memory statistics: with them on (the bundled build's default)
    // every allocation and free SQLite makes takes a process-wide mutex to
    // count bytes that cartero never reads (sqlite3_memory_used). If it
    // fails, SQLite keeps counting, which is correct, only slower.
    // SAFETY: as above, before SQLite initialises; the argument is an int.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
    if rc != ffi::SQLITE_OK {
        eprintln!("note: SQLite keeps its memory statistics (sqlite3_config: {rc})");
    }
}
