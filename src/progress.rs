//! A progress bar as an observer of the step loop. It stays hidden for the first second, so
//! short runs print nothing, and advances in log time (samples are log-spaced, so this is
//! also the fraction of the record written).

use std::time::{Duration, Instant};

use grokflow_engine::{Control, Observer, RunInfo, StepView, StopReason};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const TICKS: u64 = 1000;

/// Shows a run's progress on stderr after one second.
pub struct ProgressObserver {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
    enabled: bool,
    s_scale: f64,
    s_end: f64,
    fixed_end: Option<f64>,
    past_end: &'static str,
}

impl ProgressObserver {
    /// A bar named `label`; `s_scale` is the clock value below which progress counts as
    /// linear (the first sample time). A disabled observer does nothing.
    pub fn new(label: &str, s_scale: f64, enabled: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(TICKS), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {percent:>3}% {elapsed:>4} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Self {
            bar,
            started: Instant::now(),
            shown: false,
            enabled,
            s_scale: s_scale.max(f64::MIN_POSITIVE),
            s_end: 1.0,
            fixed_end: None,
            past_end: "",
        }
    }

    /// Progress measured against `s_end` rather than the run's own end (which lies beyond it
    /// when the run may go on looking for something), and `past_end` said once beyond it.
    pub fn until(mut self, s_end: f64, past_end: &'static str) -> Self {
        self.fixed_end = Some(s_end);
        self.past_end = past_end;
        self
    }

    fn fraction(&self, s: f64) -> f64 {
        ((1.0 + s / self.s_scale).ln() / (1.0 + self.s_end / self.s_scale).ln()).clamp(0.0, 1.0)
    }
}

impl Observer for ProgressObserver {
    fn start(&mut self, info: &RunInfo, _theta0: &[f64]) -> Control {
        self.s_end = self.fixed_end.unwrap_or(info.s_end);
        self.started = Instant::now();
        Control::Continue
    }

    fn step(&mut self, view: &StepView<'_>) -> Control {
        if !self.enabled {
            return Control::Continue;
        }
        if !self.shown && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        if self.shown {
            self.bar
                .set_position((self.fraction(view.s) * TICKS as f64) as u64);
            let past = if view.s > self.s_end {
                self.past_end
            } else {
                ""
            };
            self.bar
                .set_message(format!("s = {:.3e}, {} steps{past}", view.s, view.steps));
        }
        Control::Continue
    }

    fn finish(&mut self, _s: f64, _theta: &[f64], _reason: &StopReason) {
        self.bar.finish_and_clear();
    }
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs a Ctrl-C handler that asks running integrations to stop (they then write what
/// they recorded). A second Ctrl-C is not intercepted differently: the flag stays set.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

/// Stops a run once Ctrl-C was pressed.
pub struct Interrupt;

impl Observer for Interrupt {
    fn step(&mut self, _view: &StepView<'_>) -> Control {
        if INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
            Control::Stop(StopReason::Stopped {
                reason: "interrupted (Ctrl-C)".into(),
            })
        } else {
            Control::Continue
        }
    }
}

/// A validation's progress bar on stderr (hidden for its first second, like a run's) and its
/// Ctrl-C: the runs in flight stop and the report keeps the systems finished.
pub struct ValidationProgress {
    bar: ProgressBar,
    started: Instant,
    shown: std::sync::atomic::AtomicBool,
}

impl ValidationProgress {
    /// `total` pieces of work: per system its references and each λ.
    pub fn new(total: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("  validate [{bar:30}] {pos}/{len} {elapsed:>4} {msg}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        Self {
            bar,
            started: Instant::now(),
            shown: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl grokflow_validation::Watch for ValidationProgress {
    fn stopped(&self) -> bool {
        INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn finished(&self, system: &str, lambda: Option<f64>) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.shown.load(Relaxed) && self.started.elapsed() > Duration::from_secs(1) {
            self.shown.store(true, Relaxed);
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.inc(1);
        self.bar.set_message(match lambda {
            None => format!("{system}: references"),
            Some(l) => format!("{system}: λ = {l:.0e}"),
        });
    }
}
