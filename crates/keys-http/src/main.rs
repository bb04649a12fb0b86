//! The `keysd` binary: see [`keys_http::cli`].

fn main() -> std::process::ExitCode {
    keys_http::cli::main()
}
