//! The card intake for the end-to-end tests: exactly `paysys-intake`'s `main`, built as
//! part of this package so `cargo test -p paysys-tests` never runs a stale intake binary.

use clap::Parser;

fn main() -> std::process::ExitCode {
    paysys_intake::cli::main(paysys_intake::cli::Cli::parse())
}
