/// glibc's allocator was about 6 % of a refresh under load; mimalloc's thread-local free lists
/// make the whole refresh path about 8 % faster (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    prolong_server::cli::main()
}
