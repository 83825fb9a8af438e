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
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_malloc_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let program_name = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(program_name)
        .args(args)
        .env(VAR, "131072")
        .exec();
    // `exec` only returns on failure.
    eprintln!(
        "note: could not re-execute {} to tune the allocator ({err}); going on",
        exe.display()
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_malloc_mmap_threshold() {}
