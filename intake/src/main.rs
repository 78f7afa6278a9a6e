//! `paysys-intake`: parse flags, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    paysys_intake::cli::main(paysys_intake::cli::Cli::parse())
}
