//! A C/C++ driver's command line (`gcc`, `clang`, `cc`, ...): what it compiles, where the
//! object goes, which directories it searches for headers, and whether kache can cache it.
//!
//! Only a single-source `-c` compile with one `-o` output is cacheable; anything kache cannot
//! key (preprocessing, dependency files it did not ask for, response files, profiles,
//! `-march=native`, ...) gets a [`CcPassthrough`] and runs unchanged. Must not touch the
//! filesystem or the store.

use std::ffi::OsString;
use std::fmt;

/// Why a C/C++ invocation was not cached; the name is what the event log and `stats` show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CcPassthrough {
    /// No `-c`: linking, a probe (`--version`, `-dumpmachine`), or nothing at all.
    NotACompile,
    /// `-E`, `-M`/`-MM`: the compiler's stdout is the result (cc's `-E` expansion probes).
    Preprocess,
    /// `-S`: assembly output.
    AssemblyOnly,
    /// Dependency-file flags (`-MD`, `-MF`, ...) kache did not add.
    DependencyFlags,
    /// `@file`: a response file.
    ResponseFile,
    NoInput,
    StdinInput,
    MultipleSources,
    /// No `-o`, or more than one.
    NoOutput,
    /// `-o` names something that is not a regular file (`/dev/null` in a configure probe, a
    /// FIFO): a restore would replace it with a file.
    OutputNotAFile,
    SaveTemps,
    ProfileOrCoverage,
    SplitDwarf,
    /// `-march=native` and friends: the result depends on the CPU, which is not keyed.
    NativeCpu,
    /// A language (`-x` or file extension) kache does not cache.
    UnknownLanguage(String),
    /// An option that reads a file the compiler does not report (`-specs=`, plugins, `-B`).
    UnkeyedInput(String),
    /// An option that writes files besides the object (`-fdump-*`, `-fstack-usage`, ...).
    ExtraOutput(String),
    /// An argument that is not valid UTF-8.
    NonUtf8Argument,
}

impl CcPassthrough {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::NotACompile => "c_not_a_compile",
            Self::Preprocess => "c_preprocess",
            Self::AssemblyOnly => "c_assembly_only",
            Self::DependencyFlags => "c_dependency_flags",
            Self::ResponseFile => "c_response_file",
            Self::NoInput => "no_input",
            Self::StdinInput => "stdin_input",
            Self::MultipleSources => "c_multiple_sources",
            Self::NoOutput => "c_no_output",
            Self::OutputNotAFile => "c_output_not_a_file",
            Self::SaveTemps => "c_save_temps",
            Self::ProfileOrCoverage => "c_profile_or_coverage",
            Self::SplitDwarf => "c_split_dwarf",
            Self::NativeCpu => "c_native_cpu",
            Self::UnknownLanguage(_) => "c_unknown_language",
            Self::UnkeyedInput(_) => "c_unkeyed_input",
            Self::ExtraOutput(_) => "c_extra_output",
            Self::NonUtf8Argument => "non_utf8_argument",
        }
    }
}

impl fmt::Display for CcPassthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownLanguage(k) | Self::UnkeyedInput(k) | Self::ExtraOutput(k) => {
                write!(f, "{} ({k})", self.name())
            }
            _ => f.write_str(self.name()),
        }
    }
}

/// The source language, from `-x` or the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    C,
    Cxx,
    ObjC,
    ObjCxx,
    /// `.s`: assembled without the preprocessor.
    Asm,
    /// `.S`/`.sx`: preprocessed assembly.
    AsmCpp,
}

impl Lang {
    fn from_x(name: &str) -> Option<Lang> {
        Some(match name {
            "c" => Lang::C,
            "c++" => Lang::Cxx,
            "objective-c" => Lang::ObjC,
            "objective-c++" => Lang::ObjCxx,
            "assembler" => Lang::Asm,
            "assembler-with-cpp" => Lang::AsmCpp,
            _ => return None,
        })
    }

    fn from_path(path: &str) -> Option<Lang> {
        let ext = path.rsplit_once('.').map(|(_, e)| e)?;
        Some(match ext {
            "c" => Lang::C,
            "cc" | "cpp" | "cxx" | "c++" | "C" | "cp" | "CPP" => Lang::Cxx,
            "m" => Lang::ObjC,
            "mm" | "M" => Lang::ObjCxx,
            "s" => Lang::Asm,
            "S" | "sx" => Lang::AsmCpp,
            _ => return None,
        })
    }

    pub(crate) fn is_assembly(self) -> bool {
        matches!(self, Lang::Asm | Lang::AsmCpp)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Lang::C => "c",
            Lang::Cxx => "c++",
            Lang::ObjC => "objective-c",
            Lang::ObjCxx => "objective-c++",
            Lang::Asm => "assembler",
            Lang::AsmCpp => "assembler-with-cpp",
        }
    }
}

/// Where an include directory came from; the search order is quote dirs, then `-I`, then
/// `-isystem`, then the system's own, then `-idirafter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DirKind {
    Quote,
    Angle,
    System,
    After,
}

/// A cacheable compile.
#[derive(Debug, Clone)]
pub(crate) struct CcArgs {
    /// Every argument as given.
    pub tokens: Vec<String>,
    /// Indices of the `-o` option and its value (one index for `-ofile`).
    pub output_indices: Vec<usize>,
    pub source: String,
    pub output: String,
    pub lang: Lang,
    /// Debug info requested (`-g…` other than `-g0`): the object embeds the working directory.
    pub debug: bool,
    /// `-nostdinc`: no system include directories.
    pub no_std_inc: bool,
    /// User include directories as given, with their place in the search order.
    pub include_dirs: Vec<(DirKind, String)>,
    /// Options whose operand is a path (`-I dir`, `-include f`, ...): indices of the path
    /// tokens, which are keyed relative to the checkout when kache remaps paths.
    pub path_operands: Vec<usize>,
}

/// Options whose value is the next argument.
const SEPARATE: &[&str] = &[
    "-o",
    "-I",
    "-D",
    "-U",
    "-include",
    "-imacros",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "-imultilib",
    "-x",
    "-MF",
    "-MT",
    "-MQ",
    "-Xpreprocessor",
    "-Xassembler",
    "-Xlinker",
    "-Xclang",
    "-L",
    "-l",
    "-arch",
    "-target",
    "--target",
    "--sysroot",
    "-T",
    "-u",
    "-z",
    "--param",
    "-aux-info",
    "-B",
    "-F",
    "-iframework",
    "-gcc-toolchain",
    "-specs",
];

/// Options whose operand is a file or directory the compile reads.
const PATH_VALUED: &[&str] = &[
    "-I",
    "-include",
    "-imacros",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-isysroot",
    "--sysroot",
    "-F",
    "-iframework",
];

impl CcArgs {
    /// Parses the arguments after the compiler; `Err` says why the compile is not cacheable.
    pub(crate) fn parse(raw: &[OsString]) -> Result<CcArgs, CcPassthrough> {
        let mut tokens = Vec::with_capacity(raw.len());
        for a in raw {
            tokens.push(a.to_str().ok_or(CcPassthrough::NonUtf8Argument)?.to_owned());
        }
        let mut compile = false;
        let mut preprocess = false;
        let mut assembly_only = false;
        let mut forced_lang: Option<Lang> = None;
        let mut sources: Vec<(usize, Result<Lang, CcPassthrough>)> = Vec::new();
        let mut output: Option<(String, Vec<usize>)> = None;
        let mut debug = false;
        let mut no_std_inc = false;
        let mut include_dirs = Vec::new();
        let mut path_operands = Vec::new();

        let mut i = 0;
        while i < tokens.len() {
            let t = tokens[i].as_str();
            if let Some(flag) = SEPARATE.iter().find(|f| **f == t) {
                let value_index = i + 1;
                let Some(value) = tokens.get(value_index) else {
                    // A dangling option: let the compiler report it.
                    return Err(CcPassthrough::NotACompile);
                };
                check_separate(flag, value)?;
                match *flag {
                    "-o" => {
                        if output.is_some() {
                            return Err(CcPassthrough::NoOutput);
                        }
                        output = Some((value.clone(), vec![i, value_index]));
                    }
                    "-x" => forced_lang = lang_of_x(value)?,
                    _ => {}
                }
                if PATH_VALUED.contains(flag) {
                    path_operands.push(value_index);
                    if let Some(kind) = dir_kind(flag) {
                        include_dirs.push((kind, value.clone()));
                    }
                }
                i += 2;
                continue;
            }
            match t {
                "-c" => compile = true,
                "-E" | "-M" | "-MM" => preprocess = true,
                "-S" => assembly_only = true,
                "-nostdinc" | "-nostdinc++" => no_std_inc = true,
                "-" => return Err(CcPassthrough::StdinInput),
                _ if t.starts_with('@') => return Err(CcPassthrough::ResponseFile),
                _ if t.starts_with("-o") => {
                    if output.is_some() {
                        return Err(CcPassthrough::NoOutput);
                    }
                    output = Some((t[2..].to_owned(), vec![i]));
                }
                _ if t.starts_with("-x") => forced_lang = lang_of_x(&t[2..])?,
                _ if t.starts_with('-') => {
                    check_flag(t)?;
                    if t.starts_with("-g") && t != "-g0" {
                        debug = true;
                    }
                    if t == "-g0" {
                        debug = false;
                    }
                    if let Some((flag, value)) = joined_path(t) {
                        if let Some(kind) = dir_kind(flag) {
                            include_dirs.push((kind, value.to_owned()));
                        }
                        path_operands.push(i);
                    }
                }
                _ => {
                    // An unknown language matters only once this is known to be a compile.
                    let lang = forced_lang
                        .or_else(|| Lang::from_path(t))
                        .ok_or_else(|| CcPassthrough::UnknownLanguage(ext_of(t)));
                    sources.push((i, lang));
                }
            }
            i += 1;
        }
        if preprocess {
            return Err(CcPassthrough::Preprocess);
        }
        if assembly_only {
            return Err(CcPassthrough::AssemblyOnly);
        }
        if !compile {
            return Err(CcPassthrough::NotACompile);
        }
        let (source_index, lang) = match sources.as_slice() {
            [] => return Err(CcPassthrough::NoInput),
            [(i, lang)] => (*i, lang.clone()?),
            _ => return Err(CcPassthrough::MultipleSources),
        };
        let Some((output, output_indices)) = output.filter(|(o, _)| !o.is_empty() && o != "-")
        else {
            return Err(CcPassthrough::NoOutput);
        };
        path_operands.push(source_index);
        Ok(CcArgs {
            source: tokens[source_index].clone(),
            tokens,
            output_indices,
            output,
            lang,
            debug,
            no_std_inc,
            include_dirs,
            path_operands,
        })
    }
}

fn ext_of(path: &str) -> String {
    path.rsplit_once('.')
        .map(|(_, e)| e.to_owned())
        .unwrap_or_default()
}

fn lang_of_x(value: &str) -> Result<Option<Lang>, CcPassthrough> {
    if value == "none" {
        return Ok(None);
    }
    Lang::from_x(value)
        .map(Some)
        .ok_or_else(|| CcPassthrough::UnknownLanguage(value.to_owned()))
}

fn dir_kind(flag: &str) -> Option<DirKind> {
    Some(match flag {
        "-iquote" => DirKind::Quote,
        "-I" => DirKind::Angle,
        "-isystem" => DirKind::System,
        "-idirafter" => DirKind::After,
        _ => return None,
    })
}

/// `-Idir`, `-isystemdir`, `--sysroot=dir`, ...: the flag and the path.
fn joined_path(t: &str) -> Option<(&'static str, &str)> {
    if let Some(v) = t.strip_prefix("--sysroot=") {
        return Some(("--sysroot", v));
    }
    // Longest first, so `-isystem…` is not read as `-i…`.
    for flag in [
        "-idirafter",
        "-isystem",
        "-iquote",
        "-imacros",
        "-include",
        "-isysroot",
        "-iframework",
        "-I",
        "-F",
    ] {
        if let Some(v) = t.strip_prefix(flag)
            && !v.is_empty()
        {
            return Some((flag, v));
        }
    }
    None
}

fn check_separate(flag: &str, value: &str) -> Result<(), CcPassthrough> {
    match flag {
        "-MF" | "-MT" | "-MQ" => Err(CcPassthrough::DependencyFlags),
        "-B" | "-specs" => Err(CcPassthrough::UnkeyedInput(flag.to_owned())),
        "-aux-info" => Err(CcPassthrough::ExtraOutput(flag.to_owned())),
        "-Xclang" | "-Xpreprocessor" | "-Xassembler" => check_forwarded(value),
        _ => Ok(()),
    }
}

/// An option passed through to the preprocessor, assembler or clang's frontend.
fn check_forwarded(value: &str) -> Result<(), CcPassthrough> {
    if value.starts_with("-M") || value.starts_with("-dependency") || value.starts_with("--MD") {
        return Err(CcPassthrough::DependencyFlags);
    }
    if value.starts_with("-load") || value.starts_with("-plugin") || value.starts_with("-fplugin") {
        return Err(CcPassthrough::UnkeyedInput(value.to_owned()));
    }
    // Assembler listings (`-a…`) and anything else naming a file are outputs kache misses.
    if value.starts_with("-a") || value.contains('=') {
        return Err(CcPassthrough::ExtraOutput(value.to_owned()));
    }
    Ok(())
}

fn check_flag(t: &str) -> Result<(), CcPassthrough> {
    let starts = |p: &[&str]| p.iter().any(|p| t.starts_with(p));
    if starts(&["-MD", "-MMD", "-MP", "-MG", "-MF", "-MT", "-MQ"]) {
        return Err(CcPassthrough::DependencyFlags);
    }
    if t.starts_with("-save-temps") {
        return Err(CcPassthrough::SaveTemps);
    }
    if starts(&[
        "-fprofile-",
        "--coverage",
        "-ftest-coverage",
        "-fauto-profile",
        "-fcs-profile-",
        "-fcoverage-",
        "-fbranch-probabilities",
        "-fcreate-profile",
    ]) {
        return Err(CcPassthrough::ProfileOrCoverage);
    }
    if t.starts_with("-gsplit-dwarf") {
        return Err(CcPassthrough::SplitDwarf);
    }
    if t.ends_with("=native") && starts(&["-march=", "-mtune=", "-mcpu="]) {
        return Err(CcPassthrough::NativeCpu);
    }
    if starts(&[
        "-fplugin",
        "-specs=",
        "--specs=",
        "-fsanitize-blacklist=",
        "-fsanitize-ignorelist=",
        "-fprebuilt-module-path",
        "-fmodule",
        "-fmodules",
        "-B",
        "--gcc-toolchain",
        "-fpch-preprocess",
    ]) {
        return Err(CcPassthrough::UnkeyedInput(t.to_owned()));
    }
    if starts(&[
        "-fdump-",
        "-fstack-usage",
        "-fcallgraph-info",
        "-ftime-trace",
        "-fopt-info",
        "-fsave-optimization-record",
        "-frecord-gcc-switches",
        "-Wa,-a",
        "-Wa,--MD",
    ]) {
        return Err(CcPassthrough::ExtraOutput(t.to_owned()));
    }
    if let Some(forwarded) = t.strip_prefix("-Wp,").or_else(|| t.strip_prefix("-Wa,")) {
        for part in forwarded.split(',') {
            check_forwarded(part)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<CcArgs, CcPassthrough> {
        CcArgs::parse(&v.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn a_build_script_compile() {
        let a = parse(&[
            "-O2",
            "-ffunction-sections",
            "-fPIC",
            "-gdwarf-4",
            "-m64",
            "-I",
            "/src/inc",
            "-Iother",
            "-isystem",
            "/sys",
            "-Wall",
            "-DX=1",
            "-o",
            "/out/a.o",
            "-c",
            "/src/a.c",
        ])
        .expect("cacheable");
        assert_eq!(a.source, "/src/a.c");
        assert_eq!(a.output, "/out/a.o");
        assert_eq!(a.lang, Lang::C);
        assert!(a.debug);
        assert_eq!(
            a.include_dirs,
            vec![
                (DirKind::Angle, "/src/inc".to_owned()),
                (DirKind::Angle, "other".to_owned()),
                (DirKind::System, "/sys".to_owned())
            ]
        );
        assert_eq!(a.output_indices, vec![12, 13]);
        assert_eq!(a.path_operands, vec![6, 7, 9, 15]);
    }

    #[test]
    fn languages() {
        let lang = |f: &str| parse(&["-c", f, "-o", "x.o"]).map(|a| a.lang);
        assert_eq!(lang("a.cc"), Ok(Lang::Cxx));
        assert_eq!(lang("a.S"), Ok(Lang::AsmCpp));
        assert_eq!(
            parse(&["-x", "c++", "-c", "a.weird", "-o", "x.o"]).map(|a| a.lang),
            Ok(Lang::Cxx)
        );
        assert!(matches!(
            lang("a.f90"),
            Err(CcPassthrough::UnknownLanguage(_))
        ));
        assert!(matches!(
            parse(&["-x", "cuda", "-c", "a.cu", "-o", "x.o"]),
            Err(CcPassthrough::UnknownLanguage(_))
        ));
    }

    #[test]
    fn what_passes_through() {
        let cases: &[(&[&str], &str)] = &[
            (&["-E", "a.c"], "c_preprocess"),
            (&["--version"], "c_not_a_compile"),
            (&["a.o", "-o", "prog"], "c_not_a_compile"),
            (&["-S", "a.c", "-o", "a.s"], "c_assembly_only"),
            (&["-c", "a.c", "-o", "a.o", "-MD"], "c_dependency_flags"),
            (
                &["-c", "a.c", "-o", "a.o", "-MF", "d"],
                "c_dependency_flags",
            ),
            (
                &["-c", "a.c", "-o", "a.o", "-Wp,-MD,x.d"],
                "c_dependency_flags",
            ),
            (&["-c", "@args"], "c_response_file"),
            (&["-c", "a.c", "b.c"], "c_multiple_sources"),
            (&["-c", "a.c"], "c_no_output"),
            (&["-c", "a.c", "-o", "a.o", "-o", "b.o"], "c_no_output"),
            (&["-c", "-", "-o", "a.o"], "stdin_input"),
            (&["-c", "a.c", "-o", "a.o", "-save-temps"], "c_save_temps"),
            (
                &["-c", "a.c", "-o", "a.o", "--coverage"],
                "c_profile_or_coverage",
            ),
            (
                &["-c", "a.c", "-o", "a.o", "-fprofile-generate"],
                "c_profile_or_coverage",
            ),
            (
                &["-c", "a.c", "-o", "a.o", "-gsplit-dwarf"],
                "c_split_dwarf",
            ),
            (&["-c", "a.c", "-o", "a.o", "-march=native"], "c_native_cpu"),
            (&["-c", "a.c", "-o", "a.o", "-specs=x"], "c_unkeyed_input"),
            (&["-c", "a.c", "-o", "a.o", "-B", "/x"], "c_unkeyed_input"),
            (
                &["-c", "a.c", "-o", "a.o", "-fdump-tree-all"],
                "c_extra_output",
            ),
            (
                &["-c", "a.c", "-o", "a.o", "-Wa,-adhln=l"],
                "c_extra_output",
            ),
            (
                &["-c", "a.c", "-o", "a.o", "-Xclang", "-load"],
                "c_unkeyed_input",
            ),
        ];
        for (args, want) in cases {
            match parse(args) {
                Err(r) => assert_eq!(r.name(), *want, "{args:?}"),
                Ok(_) => panic!("{args:?} should pass through as {want}"),
            }
        }
    }

    #[test]
    fn joined_forms() {
        let a = parse(&[
            "-c",
            "x.c",
            "-ox.o",
            "-Iinc",
            "-isystem/s",
            "--sysroot=/r",
            "-g0",
        ])
        .expect("cacheable");
        assert_eq!(a.output, "x.o");
        assert_eq!(a.output_indices, vec![2]);
        assert!(!a.debug);
        assert_eq!(
            a.include_dirs,
            vec![
                (DirKind::Angle, "inc".to_owned()),
                (DirKind::System, "/s".to_owned())
            ]
        );
    }
}
