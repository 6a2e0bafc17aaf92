//! `kache monitor`: a live view of the event log while builds run: hits and misses as they
//! happen, the hit rate, the time saved and the slowest compiles.
//!
//! [`MonitorState`] folds events in, its figures through the [`Summary`] `kache stats` uses
//! too; [`draw`] is a pure function of it (tested with ratatui's `TestBackend`); [`run`] only
//! wires the log follower ([`crate::events::tail`]) and the terminal together. `q`, Esc or
//! Ctrl-C quits.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::process::ExitCode;

use super::exit::Exit;
use std::time::Duration;

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::{DefaultTerminal, Frame};

use super::format::{self, truncate};
use crate::config::Config;
use crate::events::summary::Summary;
use crate::events::tail::{Batch, LogTail, Reopened};
use crate::events::{self, BuildEvent, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct MonitorArgs {
    /// Start with the whole current log instead of only what happens from now on
    #[arg(long)]
    from_start: bool,
}

/// How many recent invocations and slowest compiles are kept.
const RECENT: usize = 200;
const SLOWEST: usize = 20;
/// How often the log is polled and the screen redrawn when no key is pressed.
const TICK: Duration = Duration::from_millis(250);

/// Everything the screen shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct MonitorState {
    pub log_path: String,
    /// Unix milliseconds at the last tick, for the ages shown.
    pub now_ms: u64,
    /// The figures, counted as `kache stats` counts them.
    pub summary: Summary,
    /// Newest first.
    pub recent: VecDeque<BuildEvent>,
    /// Slowest rustc runs seen, slowest first: (crate, milliseconds).
    pub slowest: Vec<(String, f64)>,
    /// A line about the log itself (rotated, truncated).
    pub notice: Option<String>,
}

impl MonitorState {
    pub(crate) fn new(log_path: String) -> Self {
        MonitorState {
            log_path,
            ..Self::default()
        }
    }

    pub(crate) fn apply(&mut self, batch: Batch) {
        match batch.reopened {
            Some(Reopened::Rotated) => {
                self.notice = Some("log rotated; following the new file".into())
            }
            Some(Reopened::Truncated) => {
                self.notice = Some("log truncated; reading it from the start".into())
            }
            None => {}
        }
        for e in batch.events {
            self.record(e);
        }
    }

    pub(crate) fn record(&mut self, e: BuildEvent) {
        self.summary.record(&e);
        if e.result == Outcome::Miss {
            let name = e.crate_name.clone().unwrap_or_else(|| "?".into());
            let at = self
                .slowest
                .partition_point(|(_, ms)| *ms >= e.compile_time_ms);
            if at < SLOWEST {
                self.slowest.insert(at, (name, e.compile_time_ms));
                self.slowest.truncate(SLOWEST);
            }
        }
        self.recent.push_front(e);
        self.recent.truncate(RECENT);
    }
}

fn result_style(r: Outcome) -> (&'static str, Style) {
    match r {
        Outcome::LocalHit => ("hit", Style::new().fg(Color::Green)),
        Outcome::RemoteHit => ("remote hit", Style::new().fg(Color::Cyan)),
        Outcome::Miss => ("miss", Style::new().fg(Color::Yellow)),
        Outcome::Passthrough => ("pass", Style::new().fg(Color::DarkGray)),
        Outcome::Error => ("error", Style::new().fg(Color::Red)),
    }
}

/// Draws the whole screen from `state`.
pub(crate) fn draw(frame: &mut Frame, state: &MonitorState) {
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let s = &state.summary;
    let hits = s.local_hits + s.remote_hits;
    let summary = vec![
        Line::from(format!(
            "hits {} (local {}, remote {})   misses {}   passthrough {}   errors {}",
            hits, s.local_hits, s.remote_hits, s.misses, s.passthrough, s.errors
        )),
        Line::styled(
            format!(
                "hit rate {}   by compile time {}   time saved {}",
                // Shares of what was counted so far, "-" before the first cacheable one.
                format::percent(hits as f64, (hits + s.misses) as f64),
                format::percent(
                    s.hit_compile_time_ms,
                    s.hit_compile_time_ms + s.miss_compile_time_ms
                ),
                format::duration_ms(s.time_saved_ms().max(0.0))
            ),
            bold,
        ),
        Line::styled(
            state
                .notice
                .clone()
                .unwrap_or_else(|| format!("following {}", state.log_path)),
            Style::new().fg(Color::DarkGray),
        ),
    ];
    frame.render_widget(
        Paragraph::new(summary).block(Block::bordered().title(" kache monitor ")),
        top,
    );

    // On a narrow terminal the tables stack and the age column goes: side by side at 40
    // columns the result column got no room at all.
    let narrow = middle.width < 60;
    let [left, right] = if narrow {
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(middle)
    } else {
        Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(middle)
    };
    let recent_rows = state.recent.iter().map(|e| {
        let (label, style) = result_style(e.result);
        let time = match e.result {
            Outcome::LocalHit | Outcome::RemoteHit => {
                format!("saved {}", format::duration_ms(e.compile_time_ms))
            }
            Outcome::Miss => format::duration_ms(e.compile_time_ms),
            _ => e
                .passthrough_reason
                .as_deref()
                .map(|r| truncate(r, 14))
                .unwrap_or_default(),
        };
        let age = state.now_ms.saturating_sub(e.ts) as i64 / 1000;
        let mut cells = vec![
            Cell::from(format::ago(age).replace(" ago", "")),
            Cell::from(label).style(style),
            Cell::from(e.crate_name.clone().unwrap_or_else(|| "?".into())),
            Cell::from(time),
        ];
        if narrow {
            cells.remove(0);
        }
        Row::new(cells)
    });
    let (widths, header) = if narrow {
        (
            vec![
                Constraint::Length(6),
                Constraint::Min(8),
                Constraint::Length(14),
            ],
            vec!["result", "crate", "time"],
        )
    } else {
        (
            vec![
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Min(10),
                Constraint::Length(16),
            ],
            vec!["age", "result", "crate", "time"],
        )
    };
    let recent = Table::new(recent_rows, widths)
        .header(Row::new(header).style(bold))
        .block(Block::bordered().title(" recent "));
    frame.render_widget(recent, left);

    let slow_rows = state.slowest.iter().map(|(name, ms)| {
        Row::new(vec![
            Cell::from(name.clone()),
            Cell::from(format::duration_ms(*ms)),
        ])
    });
    let slowest = Table::new(slow_rows, [Constraint::Min(10), Constraint::Length(9)])
        .header(Row::new(vec!["crate", "rustc"]).style(bold))
        .block(Block::bordered().title(" slowest compiles "));
    frame.render_widget(slowest, right);

    frame.render_widget(
        Paragraph::new("q / Esc / Ctrl-C: quit").style(Style::new().fg(Color::DarkGray)),
        bottom,
    );
}

fn quits(key: KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)))
}

pub(crate) fn run(config: &Config, args: MonitorArgs) -> anyhow::Result<ExitCode> {
    if !std::io::stdout().is_terminal() {
        eprintln!("kache: error: `kache monitor` needs a terminal (try `kache stats`)");
        return Ok(Exit::Usage.into());
    }
    let path = events::log_path(&config.dir);
    let mut tail = LogTail::open(&path, args.from_start);
    let mut state = MonitorState::new(path.display().to_string());
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            let _ = ratatui::try_restore();
            return Err(anyhow::Error::new(e).context("setting up the terminal"));
        }
    };
    let result = event_loop(&mut terminal, &mut tail, &mut state);
    ratatui::try_restore().context("restoring the terminal")?;
    result.map(|()| ExitCode::SUCCESS)
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    tail: &mut LogTail,
    state: &mut MonitorState,
) -> anyhow::Result<()> {
    loop {
        state.apply(tail.poll());
        state.now_ms = events::now_ms();
        terminal
            .draw(|f| draw(f, state))
            .context("drawing the screen")?;
        if event::poll(TICK).context("reading the keyboard")?
            && let Event::Key(key) = event::read().context("reading the keyboard")?
            && quits(key)
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{SCHEMA, append, log_path};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn screen(state: &MonitorState) -> String {
        screen_of(state, 80)
    }

    fn screen_of(state: &MonitorState, width: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, 20)).expect("terminal");
        terminal.draw(|f| draw(f, state)).expect("draw");
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn event(name: &str, result: Outcome, compile_ms: f64, ts: u64) -> BuildEvent {
        BuildEvent {
            schema: SCHEMA,
            ts,
            crate_name: Some(name.into()),
            result,
            compile_time_ms: compile_ms,
            elapsed_ms: 1.0,
            ..BuildEvent::default()
        }
    }

    #[test]
    fn renders_a_sample_log_and_survives_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = log_path(dir.path());
        for e in [
            event("serde", Outcome::Miss, 4200.0, 1_000),
            event("syn", Outcome::Miss, 9100.0, 2_000),
            event("itoa", Outcome::LocalHit, 300.0, 3_000),
        ] {
            append(dir.path(), &e).expect("append");
        }
        let mut tail = LogTail::open(&path, true);
        let mut state = MonitorState::new(path.display().to_string());
        state.apply(tail.poll());
        state.now_ms = 13_000;
        let text = screen(&state);
        assert!(
            text.contains("hits 1 (local 1, remote 0)   misses 2"),
            "{text}"
        );
        assert!(text.contains("hit rate 33.3%"), "{text}");
        assert!(text.contains("slowest compiles"), "{text}");
        let syn_line = text.lines().find(|l| l.contains("syn")).expect("syn shown");
        assert!(syn_line.contains("9.1 s"), "{text}");
        assert!(text.contains("saved 300.0 ms"), "{text}");
        assert!(text.contains("10 s"), "ages are relative to now: {text}");
        // Issue 10 item 10: at 40 columns the result column used to vanish.
        let narrow = screen_of(&state, 40);
        let syn_line = narrow.lines().find(|l| l.contains("syn")).expect("syn");
        assert!(
            syn_line.contains("miss") && syn_line.contains("9.1 s"),
            "{narrow}"
        );

        std::fs::write(&path, b"").expect("truncate");
        state.apply(tail.poll());
        append(
            dir.path(),
            &event("regex", Outcome::LocalHit, 2500.0, 12_000),
        )
        .expect("append");
        state.apply(tail.poll());
        let text = screen(&state);
        assert!(text.contains("log truncated"), "{text}");
        assert!(
            text.contains("hits 2 (local 2, remote 0)   misses 2"),
            "{text}"
        );
        assert!(text.contains("regex"), "{text}");
    }

    #[test]
    fn quit_keys() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(quits(key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(quits(key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(quits(key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!quits(key(KeyCode::Char('c'), KeyModifiers::NONE)));
    }
}
