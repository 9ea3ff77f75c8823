//! Event-driven BDF for a piecewise-smooth loss (DESIGN.md §3): the BDF integrates the
//! smooth flow of the current region; after every accepted step the surfaces are checked,
//! the first event located by bisection on the step's dense output, the step cut there and
//! the integration restarted in the region the event leads to.
//!
//! At a surface k reached from one side, the one-sided normal speeds a± = nₖ·f± decide:
//! both pointing the same way, the flow crosses (the side flips); pointing into the surface
//! from both sides (a₋ > 0 > a₊), it slides on it, with the field projected onto the
//! surface ([`crate::switching`]); it leaves a sliding mode when a₋ or a₊ changes sign.

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::la::dot;
use crate::method::Options;
use crate::steppers::Bdf;
use crate::stepping::{DenseOutput, SolverStats, Stepper, StopReason};
use std::sync::RwLock;

use crate::la::MatMut;
use crate::loss::Loss;
use crate::switching::Switching;

/// Bisection on the dense output stops when the bracket is this small relative to the step.
const BRACKET: f64 = 1e-13;

/// Events this close together (relative to the step) count as simultaneous.
const SIMULTANEOUS: f64 = 1e-9;

/// Multiples of the unit roundoff below which a surface value counts as zero.
const ROUNDING: f64 = 64.0 * f64::EPSILON;

/// Events in a row at the start of a step (no progress) before the flow gives up.
const MAX_STALLS: usize = 20;

/// What happens at an event.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    /// θ reached surface k from its current side.
    Hit(usize),
    /// One of the one-sided fields of sliding surface k stopped pointing into it.
    Exit(usize),
}

/// The side of the pattern `side` for g: true for g > 0 (g = 0 keeps `current`).
fn violated(side: bool, g: f64) -> bool {
    if side {
        g < 0.0
    } else {
        g > 0.0
    }
}

/// grokflow's BDF over the regions of a piecewise-smooth loss.
pub(crate) struct Switched<'f> {
    sw: &'f dyn Switching,
    region: &'f RegionLoss<'f>,
    flow: &'f GradientFlow<'f>,
    opts: &'f Options,
    inner: Bdf<'f, 'f>,
    /// The clock and state where the last step ended (cut at an event, or the inner one's).
    s: f64,
    theta: Vec<f64>,
    /// The inner BDF must restart at (s, θ) before the next step.
    restart: bool,
    /// The counts of the inner BDFs retired at events.
    retired: SolverStats,
    crossings: usize,
    sliding_modes: usize,
    sliding_time: f64,
    /// Normals, dense, of the surfaces met so far.
    normals: Vec<Option<Vec<f64>>>,
    g: Vec<f64>,
    /// Events in a row that made no progress.
    stalls: usize,
    /// The field at (s, θ) in its region.
    field: Vec<f64>,
}

impl<'f> Switched<'f> {
    /// From θ₀ in the region `region` holds (decided from the signs of g at θ₀).
    pub(crate) fn new(
        sw: &'f dyn Switching,
        region: &'f RegionLoss<'f>,
        flow: &'f GradientFlow<'f>,
        theta0: &[f64],
        opts: &'f Options,
    ) -> Result<Self, EngineError> {
        let k = sw.surface_count();
        let mut me = Self {
            sw,
            region,
            flow,
            opts,
            inner: Bdf::new(flow, theta0, opts)?,
            s: 0.0,
            theta: theta0.to_vec(),
            restart: false,
            retired: SolverStats::default(),
            crossings: 0,
            sliding_modes: 0,
            sliding_time: 0.0,
            normals: vec![None; k],
            g: vec![0.0; k],
            stalls: 0,
            field: Vec::new(),
        };
        // A start on a surface is an event at s = 0.
        sw.surfaces_into(theta0, &mut me.g);
        let on: Vec<usize> = (0..k).filter(|&i| me.g[i] == 0.0).collect();
        if !on.is_empty() {
            let events: Vec<Event> = on.into_iter().map(Event::Hit).collect();
            me.resolve(&events, 0.0, theta0.to_vec())
                .map_err(|r| EngineError::InvalidInput(r.describe()))?;
            me.restart_inner()?;
        }
        me.update_field();
        Ok(me)
    }

    /// The side of every surface decided from the signs of g at θ (g = 0: the positive side).
    pub(crate) fn sides_at(sw: &dyn Switching, theta: &[f64]) -> Vec<bool> {
        let mut g = vec![0.0; sw.surface_count()];
        sw.surfaces_into(theta, &mut g);
        g.iter().map(|&v| v >= 0.0).collect()
    }

    fn normal(&mut self, k: usize) -> &[f64] {
        let d = self.theta.len();
        let sw = self.sw;
        self.normals[k].get_or_insert_with(|| dense_normal(sw, k, d))
    }

    /// The one-sided normal speeds (n·f₋, n·f₊) of surface k at θ, up to the clock's rate.
    fn speeds(&mut self, k: usize, theta: &[f64]) -> (f64, f64) {
        let lambda = self.flow.lambda();
        let n = self.normal(k).to_vec();
        let mut side = self.region.side();
        let mut grad = vec![0.0; theta.len()];
        let mut speed = |positive: bool| {
            side[k] = positive;
            self.sw.region_gradient_into(&side, theta, &mut grad);
            -(dot(&n, &grad) + lambda * dot(&n, theta))
        };
        (speed(false), speed(true))
    }

    /// The rounding level of gₖ(θ): a value below it is no side (a kink held on a data point
    /// by a field tangent to its surface stays there up to rounding).
    fn rounding(&self, k: usize, theta: &[f64]) -> f64 {
        let mut size = 0.0;
        for (i, v) in self.sw.normal(k) {
            size += (v * theta[i]).abs();
        }
        ROUNDING * size
    }

    fn update_field(&mut self) {
        self.field.resize(self.theta.len(), 0.0);
        self.flow.rhs_into(&self.theta, &mut self.field);
    }

    /// A new BDF from (s, θ) in the current region.
    fn restart_inner(&mut self) -> Result<(), EngineError> {
        self.retired.accumulate(&self.inner.stats());
        self.inner = Bdf::new(self.flow, &self.theta, self.opts)?.starting_at(self.s);
        self.restart = false;
        Ok(())
    }

    /// The value at clock s of the event function of `e` along the last step.
    fn event_value(&mut self, e: Event, s: f64, buf: &mut [f64]) -> f64 {
        self.inner
            .interpolate_into(s, buf)
            .expect("BDF interpolation does not fail");
        match e {
            Event::Hit(k) => dot(self.normal(k), buf),
            Event::Exit(k) => {
                let theta = buf.to_vec();
                let (down, up) = self.speeds(k, &theta);
                // Positive while sliding holds.
                down.min(-up)
            }
        }
    }

    /// The clock value at which `e` happens in (s0, s1], the end of a bracket on the far side.
    fn locate(&mut self, e: Event, s0: f64, s1: f64) -> f64 {
        let mut buf = vec![0.0; self.theta.len()];
        let positive = match e {
            Event::Hit(k) => self.region.side()[k],
            Event::Exit(_) => true,
        };
        let sign_at = |me: &mut Self, s: f64, buf: &mut [f64]| {
            let v = me.event_value(e, s, buf);
            match e {
                Event::Hit(_) => !violated(positive, v),
                Event::Exit(_) => v >= 0.0,
            }
        };
        let (mut lo, mut hi) = (s0, s1);
        if !sign_at(self, lo, &mut buf) {
            return lo;
        }
        let width = (s1 - s0).abs().max(f64::MIN_POSITIVE);
        while hi - lo > BRACKET * width {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if sign_at(self, mid, &mut buf) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    /// Decides what happens at the events `events`, all at clock s and state θ, and moves to
    /// the region they lead to. Events at one point are decided one by one, each from its
    /// own one-sided speeds: the side of a surface through θ changes the field only along
    /// its normal, so it does not change the other surfaces' speeds when the normals are
    /// orthogonal (for a ReLU network: kinks of different neurons); sliding on surfaces
    /// whose normals are dependent is refused.
    fn resolve(&mut self, events: &[Event], s: f64, mut theta: Vec<f64>) -> Result<(), StopReason> {
        let region = self.region.region();
        let (mut side, mut sliding) = (region.side.clone(), region.sliding.clone());
        for &e in events {
            match e {
                Event::Hit(k) => {
                    let (down, up) = self.speeds(k, &theta);
                    if down > 0.0 && up < 0.0 {
                        sliding.push(k);
                        self.sliding_modes += 1;
                    } else if side[k] && up < 0.0 && down <= 0.0 {
                        // From the positive side through (or, at a speed of zero, along).
                        side[k] = false;
                        self.crossings += 1;
                    } else if !side[k] && down > 0.0 && up >= 0.0 {
                        side[k] = true;
                        self.crossings += 1;
                    }
                    // Otherwise the far side's field points back (a repelling surface,
                    // reached only through the dense output's error) or neither moves off
                    // it: the flow stays on its side, from a point on the surface.
                    if violated(side[k], dot(self.normal(k), &theta)) {
                        let n = self.normal(k).to_vec();
                        let c = dot(&n, &theta) / dot(&n, &n);
                        theta.iter_mut().zip(&n).for_each(|(t, ni)| *t -= c * ni);
                    }
                }
                Event::Exit(k) => {
                    let (down, _) = self.speeds(k, &theta);
                    sliding.retain(|&i| i != k);
                    side[k] = down >= 0.0;
                }
            }
        }
        if !self.region.set(side, sliding.clone()) {
            let names: Vec<String> = sliding
                .iter()
                .map(|&k| self.sw.describe_surface(k))
                .collect();
            return Err(StopReason::SwitchingUnhandled {
                s,
                what: format!(
                    "sliding on surfaces that meet degenerately ({})",
                    names.join("; ")
                ),
            });
        }
        // θ onto the sliding surfaces exactly.
        self.region.region().project(&mut theta);
        self.s = s;
        self.theta = theta;
        self.restart = true;
        Ok(())
    }
}

impl DenseOutput for Switched<'_> {
    fn interpolate_into(&self, s: f64, out: &mut [f64]) -> Result<(), EngineError> {
        self.inner.interpolate_into(s, out)
    }
}

impl Stepper for Switched<'_> {
    fn method(&self) -> &'static str {
        self.inner.method()
    }

    fn clock(&self) -> f64 {
        self.s
    }

    fn state(&self) -> &[f64] {
        &self.theta
    }

    /// The field at the state, in its region (on a sliding surface: Filippov's).
    fn rhs(&self) -> Option<&[f64]> {
        Some(&self.field)
    }

    fn step(&mut self, s_stop: f64) -> Result<(), StopReason> {
        if self.restart {
            self.restart_inner()?;
        }
        let s0 = self.s;
        self.inner.step(s_stop)?;
        let s1 = self.inner.clock();
        let theta1 = self.inner.state().to_vec();
        let region = self.region.region();
        self.sw.surfaces_into(&theta1, &mut self.g);
        let mut events: Vec<Event> = (0..self.g.len())
            .filter(|&k| {
                !region.sliding.contains(&k)
                    && violated(region.side[k], self.g[k])
                    && self.g[k].abs() > self.rounding(k, &theta1)
            })
            .map(Event::Hit)
            .collect();
        for &k in &region.sliding {
            let (down, up) = self.speeds(k, &theta1);
            if down < 0.0 || up > 0.0 {
                events.push(Event::Exit(k));
            }
        }
        if !region.sliding.is_empty() {
            self.sliding_time += s1 - s0;
        }
        if events.is_empty() {
            self.s = s1;
            self.theta = theta1;
            self.update_field();
            return Ok(());
        }
        // The first event, and any at the same time.
        let times: Vec<f64> = events.iter().map(|&e| self.locate(e, s0, s1)).collect();
        let first = times.iter().copied().fold(f64::INFINITY, f64::min);
        if first <= s0 {
            self.stalls += 1;
            if self.stalls > MAX_STALLS {
                return Err(StopReason::SwitchingUnhandled {
                    s: s0,
                    what: format!(
                        "{MAX_STALLS} events in a row without progress ({})",
                        self.sw.describe_surface(match events[0] {
                            Event::Hit(k) | Event::Exit(k) => k,
                        })
                    ),
                });
            }
        } else {
            self.stalls = 0;
        }
        let at_once: Vec<Event> = events
            .iter()
            .zip(&times)
            .filter(|(_, &t)| t - first <= SIMULTANEOUS * (s1 - s0))
            .map(|(e, _)| *e)
            .collect();
        if !region.sliding.is_empty() {
            self.sliding_time -= s1 - first;
        }
        let mut theta = vec![0.0; theta1.len()];
        self.inner.interpolate_into(first, &mut theta)?;
        self.resolve(&at_once, first, theta)?;
        self.update_field();
        Ok(())
    }

    fn stats(&self) -> SolverStats {
        let mut stats = self.retired.clone();
        stats.accumulate(&self.inner.stats());
        stats.method.clone_from(&self.inner.stats().method);
        stats.kink_crossings = self.crossings;
        stats.sliding_modes = self.sliding_modes;
        stats.sliding_time = self.sliding_time;
        stats
    }
}

/// The region the flow is in: the side of every surface, and the surfaces it slides on with
/// an orthonormal basis of their normals.
#[derive(Clone, Debug)]
pub(crate) struct Region {
    pub(crate) side: Vec<bool>,
    pub(crate) sliding: Vec<usize>,
    basis: Vec<Vec<f64>>,
}

impl Region {
    /// v ← Pv, P the orthogonal projector onto the sliding surfaces' intersection.
    pub(crate) fn project(&self, v: &mut [f64]) {
        for q in &self.basis {
            let c = dot(q, v);
            v.iter_mut().zip(q).for_each(|(x, qi)| *x -= c * qi);
        }
    }
}

/// The smooth loss of the current region, F_side(Pθ): what the BDF integrates between two
/// events. The region changes only between integrations (at an event the stepper restarts).
pub(crate) struct RegionLoss<'a> {
    sw: &'a dyn Switching,
    name: String,
    dim: usize,
    region: RwLock<Region>,
}

/// A normal, dense.
pub(crate) fn dense_normal(sw: &dyn Switching, k: usize, d: usize) -> Vec<f64> {
    let mut n = vec![0.0; d];
    for (i, v) in sw.normal(k) {
        n[i] += v;
    }
    n
}

impl<'a> RegionLoss<'a> {
    /// The region `side` of `loss`'s surfaces, sliding on none.
    pub(crate) fn new(loss: &'a dyn Loss, sw: &'a dyn Switching, side: Vec<bool>) -> Self {
        Self {
            sw,
            name: loss.name().to_string(),
            dim: loss.dim(),
            region: RwLock::new(Region {
                side,
                sliding: Vec::new(),
                basis: Vec::new(),
            }),
        }
    }

    /// The side of every surface now.
    pub(crate) fn side(&self) -> Vec<bool> {
        self.region.read().expect("region lock").side.clone()
    }

    /// The region now.
    pub(crate) fn region(&self) -> Region {
        self.region.read().expect("region lock").clone()
    }

    /// Moves to the region `side`, sliding on `sliding` (P projects onto the intersection:
    /// a normal in the span of the others adds nothing). Returns false (and changes nothing)
    /// for a non-finite normal.
    pub(crate) fn set(&self, side: Vec<bool>, sliding: Vec<usize>) -> bool {
        let mut basis: Vec<Vec<f64>> = Vec::with_capacity(sliding.len());
        for &k in &sliding {
            let mut n = dense_normal(self.sw, k, self.dim);
            let before = dot(&n, &n).sqrt();
            for q in &basis {
                let c = dot(q, &n);
                n.iter_mut().zip(q).for_each(|(x, qi)| *x -= c * qi);
            }
            let after = dot(&n, &n).sqrt();
            if after.is_nan() {
                return false;
            }
            if after <= 1e-8 * before {
                // Its normal lies in the span of the others': the surface adds no
                // constraint to their intersection (a ReLU neuron with w = b = 0 lies on
                // the surfaces of all its data points).
                continue;
            }
            n.iter_mut().for_each(|x| *x /= after);
            basis.push(n);
        }
        *self.region.write().expect("region lock") = Region {
            side,
            sliding,
            basis,
        };
        true
    }

    fn projected(&self, r: &Region, theta: &[f64]) -> Vec<f64> {
        let mut y = theta.to_vec();
        r.project(&mut y);
        y
    }
}

impl Loss for RegionLoss<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn value(&self, theta: &[f64]) -> f64 {
        let r = self.region.read().expect("region lock");
        self.sw.region_value(&r.side, &self.projected(&r, theta))
    }

    /// P ∇F_side(Pθ).
    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        let r = self.region.read().expect("region lock");
        self.sw
            .region_gradient_into(&r.side, &self.projected(&r, theta), grad);
        r.project(grad);
    }

    /// P ∇²F_side(Pθ) P.
    fn hessian_into(&self, theta: &[f64], mut hess: MatMut<'_, f64>) {
        let r = self.region.read().expect("region lock");
        self.sw
            .region_hessian_into(&r.side, &self.projected(&r, theta), hess.as_mut());
        let d = self.dim;
        for q in &r.basis {
            // H ← (I − qqᵀ) H (I − qqᵀ).
            let hq: Vec<f64> = (0..d)
                .map(|i| (0..d).map(|j| hess[(i, j)] * q[j]).sum())
                .collect();
            let qhq = dot(q, &hq);
            for j in 0..d {
                for i in 0..d {
                    hess[(i, j)] += -q[i] * hq[j] - hq[i] * q[j] + q[i] * qhq * q[j];
                }
            }
        }
    }

    /// P ∇²F_side(Pθ) P v.
    fn hvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let r = self.region.read().expect("region lock");
        let mut pv = v.to_vec();
        r.project(&mut pv);
        self.sw
            .region_hvp_into(&r.side, &self.projected(&r, theta), &pv, out);
        r.project(out);
    }
}
