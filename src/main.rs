fn main() -> std::process::ExitCode {
    cartero::cli::main()
}
