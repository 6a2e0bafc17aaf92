//! Progress bars for long commands (gc, verify, clear): drawn on stderr, and only when stderr
//! is a terminal, so pipes, logs and `--json` consumers never see them.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::maintenance::Progress;

/// A progress bar that follows the phases a store task reports; cleared when dropped.
pub(crate) struct Bar(ProgressBar);

impl Bar {
    pub(crate) fn stderr() -> Bar {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A terminal that keeps what is drawn on it.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            // Wider than the frames may be: indicatif must not be what keeps them narrow.
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if let Ok(mut lines) = self.0.lock() {
                lines.extend(s.lines().map(str::to_owned));
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Issue 10 item 10: progress frames reached 81-82 columns.
    #[test]
    fn frames_fit_80_columns_with_the_widest_figures() {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let bar = Bar(ProgressBar::with_draw_target(None, target));
        // The longest phase name, and byte figures of four digits before the point.
        let total = (1u64 << 40) - (1 << 30);
        for bytes in [true, false] {
            bar.phase("looking for orphan blobs", total, bytes);
            bar.advance(total - 1);
            bar.0.force_draw();
        }
        let lines = screen.0.lock().map(|l| l.clone()).unwrap_or_default();
        assert!(lines.iter().any(|l| l.contains("GiB")), "{lines:?}");
        // indicatif pads a frame with blanks to clear what was drawn before.
        for line in lines.iter().map(|l| l.trim_end()) {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
    }
}
