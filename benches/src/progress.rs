//! Progress on stderr: an `indicatif` bar when stderr is a terminal, plain log lines always
//! (`ProgressBar::println` prints nothing when the bar is hidden, e.g. in a CI log).

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar plus a logger that works with or without a terminal.
#[derive(Debug, Clone)]
pub struct Progress {
    pb: ProgressBar,
}

impl Progress {
    /// A bar of `total` steps on stderr (hidden automatically when stderr is not a terminal).
    pub fn new(total: u64) -> Self {
        let pb = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}") {
            pb.set_style(style.progress_chars("=> "));
        }
        Self { pb }
    }

    /// A progress object that draws nothing but still logs (tests, `info`).
    pub fn hidden() -> Self {
        Self { pb: ProgressBar::hidden() }
    }

    /// Prints one line on stderr above the bar.
    pub fn log(&self, msg: impl AsRef<str>) {
        self.pb.suspend(|| eprintln!("{}", msg.as_ref()));
    }

    /// Sets the bar's message (what runs now).
    pub fn set_message(&self, msg: impl Into<String>) {
        self.pb.set_message(msg.into());
    }

    /// Advances the bar by one step.
    pub fn inc(&self) {
        self.pb.inc(1);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }
}
