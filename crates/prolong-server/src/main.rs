fn main() -> std::process::ExitCode {
    prolong_server::cli::main()
}
