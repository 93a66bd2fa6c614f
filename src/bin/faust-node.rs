//! `faust-node`: a faust-rs node with the demo agents registered.
//!
//! `faust-node worker --config config/demo.toml` runs the page-view counter on the embedded
//! broker; `faust-node validate --config FILE` checks a config. Your own binary is the same two
//! lines with your agents.

use std::process::ExitCode;

use faust::demo::PageViews;
use faust::App;

fn main() -> ExitCode {
    App::new().agent(PageViews::new()).main()
}
