//! Thin entry point: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    wsvault::cli::main(wsvault::cli::Cli::parse())
}
