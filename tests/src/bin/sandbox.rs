//! The sandbox for the end-to-end tests: exactly `paysys-sandbox`'s `main`, built as part
//! of this package so `cargo test -p paysys-tests` always has a fresh one next to the
//! test binaries (cargo builds a package's binaries before its integration tests, but
//! not the binaries of its dependencies).

use clap::Parser;

fn main() -> std::process::ExitCode {
    paysys_sandbox::cli::main(paysys_sandbox::cli::Cli::parse())
}
