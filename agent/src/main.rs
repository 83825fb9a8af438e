//! The `spindle` command line: parses arguments and runs one command.

use std::process::ExitCode;

use clap::Parser;
use spindle::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not mistakes.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if matches!(
        cli.command,
        spindle::cli::Command::Run(_) | spindle::cli::Command::Demo(_)
    ) {
        pin_malloc_mmap_threshold();
    }
    spindle::cli::init_logging(cli.log_format);
    ExitCode::from(spindle::cli::run(cli))
}

/// glibc's allocator raises its mmap threshold to the size of every large
/// block it frees, so after sled frees its first log buffers (512 KiB) every
/// later one comes from the heap, which fragments and never shrinks: under
/// sustained load the agent held 27 MiB of heap for 4 MiB live (and 8.5 MiB
/// when paced). A fixed threshold turns that adjustment off (measured: paced
/// 17 → 12 MiB, flat-out 36 → 16 MiB). The threshold can only be set before
/// the allocator's first use, through the environment, so `run` re-executes
/// itself once with it set (same pid, same arguments). A value set by the
/// operator is kept; if the re-exec fails the agent goes on with glibc's
/// defaults.
///
/// The re-exec also caps glibc's arenas at two (`MALLOC_ARENA_MAX`, unless
/// the operator set it): glibc gives each thread that allocates under
/// contention an arena of its own (up to 8 per core), and memory freed into
/// one is never reused by another. Flat-out, `heaptrack` showed a live heap
/// of 11.7 MiB at its peak while RSS climbed from 16 to 29 MiB over ten
/// minutes; with two arenas it stayed at 12–22 MiB (README, "Tail latency
/// and memory under an independent plant").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_malloc_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
    const ARENAS: &str = "MALLOC_ARENA_MAX";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let program_name = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let mut command = std::process::Command::new(&exe);
    command.arg0(program_name).args(args).env(VAR, "131072");
    if std::env::var_os(ARENAS).is_none() {
        command.env(ARENAS, "2");
    }
    let err = command.exec();
    // `exec` only returns on failure.
    eprintln!(
        "note: could not re-execute {} to tune the allocator ({err}); going on",
        exe.display()
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_malloc_mmap_threshold() {}
