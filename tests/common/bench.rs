//! Running the `faust-bench` tool from tests.

use std::process::{Command, Output};

/// Runs `faust-bench` with `args` to completion.
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faust-bench"))
        .args(args)
        .output()
        .expect("running faust-bench")
}

/// Everything a finished command printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
