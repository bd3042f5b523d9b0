//! `lowbit`: the command-line front end of lowbit.
//!
//! - `lowbit quantize [MODEL] --scheme w4-int-g128 -o out.lowbit.safetensors`: quantizes every Linear weight of a
//!   `.safetensors` or `.gguf` model on the CPU, prints per-layer error and size, writes a lowbit checkpoint.
//! - `lowbit inspect FILE`: describes a lowbit checkpoint (and verifies its checksums) or a model file.
//! - `lowbit schemes`: lists the weight schemes and their storage cost in bits per weight.
//!
//! Errors are printed as `error: <message>` with exit status 1 (2 for command-line usage errors).

mod inspect;
mod quantize;
mod schemes;
mod util;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Quantization and low-bit kernel toolkit: quantize models into lowbit checkpoints and inspect them.
#[derive(Parser)]
#[command(name = "lowbit", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Quantize every Linear weight of a model (.safetensors or .gguf) into a lowbit checkpoint.
    Quantize(quantize::QuantizeArgs),
    /// Describe a lowbit checkpoint (verifying its checksums) or a .safetensors / .gguf model.
    Inspect(inspect::InspectArgs),
    /// List the supported weight schemes with their storage cost.
    Schemes(schemes::SchemesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Quantize(args) => quantize::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Schemes(args) => schemes::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            util::note(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}
