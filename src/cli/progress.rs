//! Progress bars for long commands (gc, verify, clear): drawn on stderr, and only when stderr
//! is a terminal, so pipes, logs and `--json` consumers never see them.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::maintenance::Progress;

/// A progress bar that follows the phases a store task reports; cleared when dropped.
pub struct Bar(ProgressBar);

impl Bar {
    pub fn stderr() -> Bar {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bar(ProgressBar::with_draw_target(None, target))
    }
}

impl Progress for Bar {
    fn phase(&self, name: &'static str, total: u64, bytes: bool) {
        // At most 80 columns with the widest figures: 24 + 22 + "1023.99 GiB/1023.99 GiB" + eta.
        let template = if bytes {
            "{msg:<24} [{bar:20}] {bytes}/{total_bytes} ({eta})"
        } else {
            "{msg:<24} [{bar:20}] {pos}/{len} ({eta})"
        };
        // The templates are constants; a bad one would only lose the bar, never the command.
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.0.set_style(style.progress_chars("=> "));
        }
        self.0.set_message(name);
        self.0.set_length(total);
        self.0.set_position(0);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
