// A send renders, encodes and frees tens of kilobytes a message on several
// threads; glibc's allocator was about 12% of a send's CPU (perf, bench/send.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cartero::cli::main()
}
