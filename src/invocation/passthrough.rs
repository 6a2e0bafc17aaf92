//! Why an invocation was not cached. Every passthrough carries one of these, so `kache stats`
//! can count them by name (as ccache's statistics do) and users can see what to change.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PassthroughReason {
    /// A query such as `-vV` or `--print`: no compilation happens.
    Probe,
    /// No input file on the command line.
    NoInput,
    /// The source comes from standard input, which cannot be hashed ahead of time.
    StdinInput,
    /// An `--emit` kind whose outputs kache does not know how to collect.
    UnsupportedEmit(String),
    /// `-C incremental`: rustc keeps state between runs that the cache cannot see.
    Incremental,
    /// A crate type kache does not know the outputs of.
    UnsupportedCrateType(String),
    /// `-o`: an explicit output path rather than `--out-dir`.
    ExplicitOutput,
    /// No `--out-dir`.
    NoOutDir,
    /// A codegen option that makes rustc write files kache does not collect.
    UnsupportedCodegen(String),
    /// A target whose output file names kache does not predict.
    UnsupportedTarget(String),
    /// An argument that is not valid UTF-8.
    NonUtf8Argument,
    /// An `@argfile` that could not be read.
    UnreadableArgfile,
}

impl PassthroughReason {
    /// The stable snake_case name used in the event log and `kache stats`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::NoInput => "no_input",
            Self::StdinInput => "stdin_input",
            Self::UnsupportedEmit(_) => "unsupported_emit",
            Self::Incremental => "incremental",
            Self::UnsupportedCrateType(_) => "unsupported_crate_type",
            Self::ExplicitOutput => "explicit_output",
            Self::NoOutDir => "no_out_dir",
            Self::UnsupportedCodegen(_) => "unsupported_codegen",
            Self::UnsupportedTarget(_) => "unsupported_target",
            Self::NonUtf8Argument => "non_utf8_argument",
            Self::UnreadableArgfile => "unreadable_argfile",
        }
    }
}

impl fmt::Display for PassthroughReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedEmit(k)
            | Self::UnsupportedCrateType(k)
            | Self::UnsupportedCodegen(k)
            | Self::UnsupportedTarget(k) => write!(f, "{} ({k})", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}
