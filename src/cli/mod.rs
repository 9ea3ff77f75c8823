//! The command line of `simulate`, built from the registry: one subcommand per system, its
//! flags from the system's parameters and presets, then the options of every run
//! ([`RunArgs`]).

mod args;

use std::ffi::OsString;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use grokflow_systems::{registry, Kind, Param, Preset, Settings, SystemSpec};

pub use args::{
    DerivativesArg, LinearSolverArg, MethodArg, ProjectorArg, ResolvedRun, RunArgs, TimeArg,
};

/// The most worker threads a sweep or a validation takes.
pub const MAX_THREADS: usize = 256;

/// Refuses a thread count outside [1, `MAX_THREADS`].
pub fn check_threads(threads: Option<usize>) -> anyhow::Result<()> {
    match threads {
        Some(t) if !(1..=MAX_THREADS).contains(&t) => anyhow::bail!(
            "--threads must lie in [1, {MAX_THREADS}], got {t} (the default is one per core)"
        ),
        _ => Ok(()),
    }
}

const ABOUT: &str = "Simulate gradient flow with small weight decay, dθ/dt = −∇F(θ) − λθ: the \
fast phase to the interpolating manifold, then the slow drift along it that lowers ‖θ‖ and \
makes the test loss drop at t ~ 1/λ (grokking).";

/// Examples for `simulate --help`, drawn from the registry.
fn examples() -> String {
    let systems = registry();
    let first = systems.first().map_or("SYSTEM", |s| s.name);
    let mut ex = vec![
        format!("simulate {first} --lambda 1e-4"),
        format!("simulate {first} --lambda 1e-6 --limiting-flow"),
        format!("simulate {first} --lambdas 1e-2,1e-4,1e-6 --seeds 1,2"),
    ];
    if let Some(s) = systems.iter().find(|s| !s.presets.is_empty()) {
        ex.push(format!(
            "simulate {} --preset {}",
            s.name, s.presets[0].name
        ));
    }
    if let Some(s) = systems.iter().find(|s| s.smooth_family.is_some()) {
        let f = s.smooth_family.expect("found above");
        ex.push(format!(
            "simulate {} --lambda 1e-3 --sweep {}={}",
            s.name,
            f.param,
            f.values.join(",")
        ));
    }
    ex.push(format!(
        "simulate {first} --save-instance inst.json   (then: simulate {first} --instance inst.json)"
    ));
    format!(
        "Examples:\n  {}\n\n`simulate <SYSTEM> --help` lists the system's options.",
        ex.join("\n  ")
    )
}

/// What the user asked `simulate` for.
#[derive(Clone, Debug)]
pub struct SimulateRequest {
    /// The system.
    pub spec: &'static SystemSpec,
    /// The preset, if one was named.
    pub preset: Option<&'static Preset>,
    /// The system's parameters the user typed (the preset's are not in it).
    pub typed: Settings,
    /// The options of the run.
    pub run: RunArgs,
}

impl SimulateRequest {
    /// The system's parameters: the preset's, then the user's on top.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(self.spec.params);
        for (name, value) in self.preset.map_or(&[][..], |p| p.params) {
            // A preset names only its system's parameters.
            s.set(name, *value)
                .expect("presets name their system's parameters");
        }
        for (name, value) in self.typed.given() {
            s.set(name, value)
                .expect("typed parameters are the system's");
        }
        s
    }
}

/// The flag of one system parameter.
fn param_arg(p: &'static Param) -> Arg {
    let help = match p.default {
        Some(d) => format!("{} [default: {d}]", p.help),
        None => p.help.to_string(),
    };
    let arg = Arg::new(p.name)
        .long(p.name)
        .help(help)
        .allow_hyphen_values(true);
    match p.kind {
        Kind::Choice(options) => arg.value_parser(PossibleValuesParser::new(
            options.iter().map(|(v, h)| PossibleValue::new(*v).help(*h)),
        )),
        _ => arg,
    }
}

/// The subcommand of one system.
fn system_command(spec: &'static SystemSpec) -> Command {
    let mut cmd = Command::new(spec.name)
        .about(spec.about)
        .long_about(format!("{}.\n\n{}", spec.about, spec.details));
    if !spec.presets.is_empty() {
        let values = spec
            .presets
            .iter()
            .map(|p| PossibleValue::new(p.name).help(p.help));
        cmd = cmd.arg(
            Arg::new("preset")
                .long("preset")
                .help("Paper settings (your other flags still apply on top)")
                .value_parser(PossibleValuesParser::new(values)),
        );
    }
    for p in spec.params {
        cmd = cmd.arg(param_arg(p));
    }
    RunArgs::augment_args(cmd)
}

/// `simulate`'s command: a subcommand per registered system.
pub fn simulate_command() -> Command {
    let mut cmd = Command::new("simulate")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .after_help(examples())
        .subcommand_required(true)
        .arg_required_else_help(true);
    for spec in registry() {
        cmd = cmd.subcommand(system_command(spec));
    }
    cmd.subcommand(
        Command::new("merge")
            .about("Join the shards of a sweep run with --shard K/N into one sweep summary")
            .long_about(
                "Join the shards of a sweep run with --shard K/N (sweep_summary.shard-K-of-N.json \
                 in each shard's output directory) into one sweep_summary.json and .csv. Shards \
                 of different sweeps, a shard given twice and a missing shard are refused.",
            )
            .arg(
                Arg::new("dirs")
                    .value_name("DIR")
                    .help("Directories holding the shards' summaries (often one shared directory)")
                    .num_args(1..)
                    .required(true)
                    .value_parser(clap::value_parser!(std::path::PathBuf)),
            )
            .arg(
                Arg::new("out")
                    .long("out")
                    .help("Where the merged summary goes [default: the first DIR]")
                    .value_parser(clap::value_parser!(std::path::PathBuf)),
            ),
    )
}

/// What `simulate` was asked to do.
#[derive(Clone, Debug)]
pub enum Invocation {
    /// One run or a sweep of a system.
    Run(Box<SimulateRequest>),
    /// `simulate merge DIR… [--out DIR]`.
    Merge {
        /// The shards' directories.
        dirs: Vec<std::path::PathBuf>,
        /// Where the merged summary goes.
        out: std::path::PathBuf,
    },
}

/// Parses `simulate`'s arguments; clap's own errors (and --help) exit the process.
pub fn parse_invocation(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> Invocation {
    let matches = simulate_command().get_matches_from(args);
    if let Some(("merge", sub)) = matches.subcommand() {
        let dirs: Vec<std::path::PathBuf> = sub
            .get_many::<std::path::PathBuf>("dirs")
            .map(|d| d.cloned().collect())
            .unwrap_or_default();
        let out = sub
            .get_one::<std::path::PathBuf>("out")
            .cloned()
            .unwrap_or_else(|| dirs[0].clone());
        return Invocation::Merge { dirs, out };
    }
    Invocation::Run(Box::new(request(&matches).unwrap_or_else(|e| e.exit())))
}

/// Parses the arguments of a run or sweep of a system; clap's own errors (and --help) exit
/// the process, as does `merge` (see [`parse_invocation`]).
pub fn parse_simulate(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> SimulateRequest {
    match parse_invocation(args) {
        Invocation::Run(r) => *r,
        Invocation::Merge { .. } => {
            eprintln!("error: `merge` is not a run; use parse_invocation");
            std::process::exit(2)
        }
    }
}

fn request(matches: &ArgMatches) -> Result<SimulateRequest, clap::Error> {
    let (name, sub) = matches
        .subcommand()
        .expect("a subcommand is required by the command");
    let spec = grokflow_systems::find(name).expect("subcommands come from the registry");
    let mut typed = Settings::new(spec.params);
    for p in spec.params {
        if let Some(v) = sub.get_one::<String>(p.name) {
            typed
                .set(p.name, v.clone())
                .expect("flags come from the system's parameters");
        }
    }
    let preset = sub
        .try_get_one::<String>("preset")
        .ok()
        .flatten()
        .and_then(|p| spec.preset(p));
    Ok(SimulateRequest {
        spec,
        preset,
        typed,
        run: RunArgs::from_arg_matches(sub)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every system's flags and the run options coexist (clap checks names and clashes).
    #[test]
    fn the_command_is_well_formed() {
        simulate_command().debug_assert();
    }

    #[test]
    fn typed_parameters_win_over_the_preset() {
        let r = parse_simulate([
            "simulate",
            "matrix-completion",
            "--preset",
            "paper-fig2",
            "--n1",
            "12",
        ]);
        let s = r.settings();
        assert_eq!(s.raw("observed").unwrap(), Some("0.5"));
        assert_eq!(s.count("n1").unwrap(), 12);
        let again = parse_simulate([
            "simulate",
            "matrix-completion",
            "--preset",
            "paper-fig2",
            "--observed",
            "0.8",
        ]);
        assert_eq!(again.settings().real("observed").unwrap(), 0.8);
    }
}
