//! Every system's gradient, Hessian and Hessian-vector product against finite differences,
//! at θ_init and at random points, through the one generic check.

use grokflow_engine::check_derivatives;
use grokflow_systems::data::{gaussian_vec, rng};
use grokflow_systems::matrix_completion::{CompletionParams, MatrixCompletion};
use grokflow_systems::relu::{Activation, ReluParams, TwoLayerNetwork};
use grokflow_systems::{registry, System};

fn check(system: &dyn System, label: &str) {
    let mut points = vec![system.theta_init().to_vec()];
    let mut g = rng(11);
    for _ in 0..2 {
        points.push(gaussian_vec(&mut g, system.dim(), 1.0));
    }
    for (k, theta) in points.iter().enumerate() {
        let rep = check_derivatives(system, theta, 1e-6);
        eprintln!("{label} point {k}: {rep:?}");
        assert!(rep.gradient < 1e-6, "{label} point {k}: gradient {rep:?}");
        assert!(rep.hessian < 1e-6, "{label} point {k}: Hessian {rep:?}");
        assert!(
            rep.asymmetry < 1e-12,
            "{label} point {k}: asymmetry {rep:?}"
        );
        // The product against differences of the gradient (the report), and against the
        // Hessian times v exactly.
        assert!(
            rep.hvp < 1e-6,
            "{label} point {k}: Hessian-vector product {rep:?}"
        );
        let v: Vec<f64> = (0..system.dim()).map(|i| (i as f64 * 0.37).sin()).collect();
        let (mut hv, mut dense) = (vec![0.0; v.len()], vec![0.0; v.len()]);
        system.hvp_into(theta, &v, &mut hv);
        grokflow_engine::la::matvec_into(system.hessian(theta).as_ref(), &v, &mut dense);
        let exact = grokflow_engine::la::distance(&hv, &dense) / grokflow_engine::la::norm(&dense);
        assert!(exact < 1e-10, "{label} point {k}: H·v off by {exact:e}");
        assert!(rep.passed, "{label} point {k}: {:?}", rep.failures());
    }
}

#[test]
fn every_system_passes_the_derivative_check() {
    for entry in registry() {
        let system = (entry.cheap)(3).expect("cheap instances are valid");
        check(system.as_ref(), entry.name);
    }
}

/// A two-layer network of 8 neurons on 5 points with the given activation.
fn small_network(activation: Activation) -> TwoLayerNetwork {
    let p = ReluParams {
        width: 8,
        n: 5,
        activation,
        seed: 4,
        ..ReluParams::default()
    };
    TwoLayerNetwork::generate(&p).unwrap()
}

#[test]
fn both_activations_pass_the_derivative_check() {
    for activation in [
        Activation::Relu,
        Activation::Softplus { beta: 1.0 },
        Activation::Softplus { beta: 20.0 },
    ] {
        let net = small_network(activation);
        check(&net, &format!("relu {activation:?}"));
    }
}

#[test]
fn the_check_catches_a_wrong_system_hessian() {
    // Scaling the loss but not its Hessian must be caught: a test that cannot fail is no test.
    struct Scaled(Box<dyn System>);
    impl grokflow_engine::Loss for Scaled {
        fn name(&self) -> &str {
            "scaled"
        }
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn value(&self, t: &[f64]) -> f64 {
            1.001 * self.0.value(t)
        }
        fn gradient_into(&self, t: &[f64], g: &mut [f64]) {
            self.0.gradient_into(t, g);
            g.iter_mut().for_each(|x| *x *= 1.001);
        }
        fn hessian_into(&self, t: &[f64], h: grokflow_engine::la::MatMut<'_, f64>) {
            self.0.hessian_into(t, h);
        }
    }
    let s = Scaled((registry()[1].cheap)(3).unwrap());
    let rep = check_derivatives(&s, s.0.theta_init(), 1e-6);
    assert!(rep.gradient < 1e-6 && rep.hessian > 5e-4, "{rep:?}");
}

/// For every least-squares system: F = ‖r‖²/(2c), the residual Jacobian against central
/// differences of r, and the structured products J·v, Jᵀ·u and JJᵀ (used by the matrix-free
/// Newton solve) against the assembled Jacobian.
#[test]
fn residual_jacobians_and_their_products_match() {
    use grokflow_engine::la::{distance, matvec_into, norm, DMat};
    for entry in registry() {
        let system = (entry.cheap)(3).expect("cheap instances are valid");
        let Some(res) = system.residuals() else {
            continue;
        };
        let (m, d) = (res.count(), system.dim());
        let mut g = rng(5);
        for k in 0..3 {
            let theta = if k == 0 {
                system.theta_init().to_vec()
            } else {
                gaussian_vec(&mut g, d, 1.0)
            };
            let label = format!("{} point {k}", entry.name);
            let mut r = vec![0.0; m];
            res.residuals_into(&theta, &mut r);
            let f = norm(&r).powi(2) / (2.0 * res.scale());
            let value = system.value(&theta);
            assert!(
                (f - value).abs() <= 1e-12 * value.abs().max(1.0),
                "{label}: ‖r‖²/2c = {f}, F = {value}"
            );

            let mut jac = DMat::zeros(m, d);
            res.jacobian_into(&theta, jac.as_mut());
            let (mut rp, mut rm) = (vec![0.0; m], vec![0.0; m]);
            let mut worst = 0.0f64;
            for j in 0..d {
                let h = 1e-6 * theta[j].abs().max(1.0);
                let mut t = theta.clone();
                t[j] += h;
                res.residuals_into(&t, &mut rp);
                t[j] -= 2.0 * h;
                res.residuals_into(&t, &mut rm);
                for i in 0..m {
                    let fd = (rp[i] - rm[i]) / (2.0 * h);
                    worst = worst.max((fd - jac[(i, j)]).abs() / jac[(i, j)].abs().max(1.0));
                }
            }
            assert!(worst < 1e-6, "{label}: residual Jacobian off by {worst}");
            // Rank-one groups: A's column times ∇β_g gives J's columns on group g.
            if let Some(a) = res.group_features() {
                let groups = res
                    .curvature_groups()
                    .expect("rank-one groups are curvature groups");
                let mut grads = vec![0.0; d];
                assert!(
                    res.coefficient_gradients_into(&theta, &mut grads),
                    "{label}"
                );
                assert_eq!((a.nrows(), a.ncols()), (m, groups.len()), "{label}");
                let mut q = 0;
                for (g, group) in groups.iter().enumerate() {
                    for &p in group {
                        for i in 0..m {
                            let e = (a[(i, g)] * grads[q] - jac[(i, p)]).abs();
                            assert!(
                                e <= 1e-15 * jac[(i, p)].abs().max(1.0),
                                "{label}: J[{i}, {p}] off by {e}"
                            );
                        }
                        q += 1;
                    }
                }
            }
            // The transposed layout holds the same J, in storage filled with NaN first so
            // that an entry left unwritten shows. (Matrix sensing and the diagonal network
            // write J through their Jᵀ, the others Jᵀ through their J, so this checks the
            // views and that every entry is written; J's values are checked by the
            // differences above.)
            let mut jt = DMat::from_fn(d, m, |_, _| f64::NAN);
            res.jacobian_transpose_into(&theta, jt.as_mut());
            for i in 0..m {
                for j in 0..d {
                    assert_eq!(
                        jt[(j, i)].to_bits(),
                        jac[(i, j)].to_bits(),
                        "{label}: Jᵀ[{j}, {i}] = {} against J[{i}, {j}] = {}",
                        jt[(j, i)],
                        jac[(i, j)]
                    );
                }
            }

            let v = gaussian_vec(&mut g, d, 1.0);
            let u = gaussian_vec(&mut g, m, 1.0);
            let (mut jv, mut jv_dense) = (vec![0.0; m], vec![0.0; m]);
            res.jvp_into(&theta, &v, &mut jv);
            matvec_into(jac.as_ref(), &v, &mut jv_dense);
            let rel = distance(&jv, &jv_dense) / norm(&jv_dense);
            assert!(rel < 1e-13, "{label}: J·v off by {rel}");
            let (mut ju, mut ju_dense) = (vec![0.0; d], vec![0.0; d]);
            res.vjp_into(&theta, &u, &mut ju);
            matvec_into(jac.transpose(), &u, &mut ju_dense);
            let rel = distance(&ju, &ju_dense) / norm(&ju_dense);
            assert!(rel < 1e-13, "{label}: Jᵀ·u off by {rel}");
            let mut gram = DMat::from_fn(m, m, |_, _| f64::NAN);
            res.gram_into(&theta, gram.as_mut());
            let dense = &jac * jac.transpose();
            let rel = (&gram - &dense).norm_l2() / dense.norm_l2();
            assert!(rel < 1e-13, "{label}: JJᵀ off by {rel}");
        }
    }
}

/// ∇²F = JᵀJ/c + R with R given block by block on its curvature groups (the structured
/// Newton solve builds its matrix from these): the groups partition 0..d and the sum matches
/// the analytic Hessian, itself checked against finite differences above.
fn check_curvature(system: &dyn System, label: &str) -> bool {
    use grokflow_engine::la::DMat;
    let Some(res) = system.residuals() else {
        return false;
    };
    let Some(groups) = res.curvature_groups() else {
        return false;
    };
    let (m, d) = (res.count(), system.dim());
    let mut seen = vec![0usize; d];
    groups.iter().flatten().for_each(|&i| seen[i] += 1);
    assert!(
        seen.iter().all(|&s| s == 1),
        "{label}: groups do not partition 0..d"
    );
    let mut g = rng(9);
    for k in 0..3 {
        let theta = if k == 0 {
            system.theta_init().to_vec()
        } else {
            gaussian_vec(&mut g, d, 1.0)
        };
        let mut jac = DMat::zeros(m, d);
        res.jacobian_into(&theta, jac.as_mut());
        let mut model = jac.transpose() * &jac * (1.0 / res.scale());
        let mut blocks = vec![f64::NAN; groups.iter().map(|g| g.len() * g.len()).sum()];
        res.curvature_blocks_into(&theta, &mut blocks);
        let mut o = 0;
        for group in &groups {
            let kk = group.len();
            for (a, &pa) in group.iter().enumerate() {
                for (b, &pb) in group.iter().enumerate() {
                    model[(pa, pb)] += blocks[o + a * kk + b];
                }
            }
            o += kk * kk;
        }
        let mut h = DMat::zeros(d, d);
        system.hessian_into(&theta, h.as_mut());
        let rel = (&model - &h).norm_l2() / h.norm_l2();
        assert!(
            rel < 1e-12,
            "{label} point {k}: JᵀJ/c + R off the Hessian by {rel}"
        );
    }
    true
}

#[test]
fn block_curvature_completes_the_gauss_newton_hessian() {
    let mut checked = Vec::new();
    for entry in registry() {
        let system = (entry.cheap)(3).expect("cheap instances are valid");
        if check_curvature(system.as_ref(), entry.name) {
            checked.push(entry.name);
        }
    }
    for activation in [Activation::Relu, Activation::Softplus { beta: 20.0 }] {
        let net = small_network(activation);
        assert!(check_curvature(&net, &format!("relu {activation:?}")));
    }
    assert_eq!(
        checked,
        [
            "linear",
            "matrix-completion",
            "matrix-sensing",
            "diagonal",
            "relu",
            "modular"
        ],
        "systems declaring curvature blocks"
    );
}

/// A loss that declares a shared curvature block has groups of one size, all its blocks
/// equal, and forms J(I ⊗ C)Jᵀ as Σ_g J_g C J_gᵀ through its Jacobian does (C a general,
/// non-symmetric k×k matrix).
fn check_shared_gram(system: &dyn System, label: &str) -> bool {
    use grokflow_engine::la::DMat;
    let Some(res) = system.residuals() else {
        return false;
    };
    if !res.has_shared_block_gram() {
        return false;
    }
    let groups = res.curvature_groups().expect("a shared block needs groups");
    let (m, d, k) = (res.count(), system.dim(), groups[0].len());
    assert!(groups.iter().all(|g| g.len() == k), "{label}: group sizes");
    let mut g = rng(11);
    for point in 0..2 {
        let theta = if point == 0 {
            system.theta_init().to_vec()
        } else {
            gaussian_vec(&mut g, d, 1.0)
        };
        let mut blocks = vec![f64::NAN; groups.len() * k * k];
        res.curvature_blocks_into(&theta, &mut blocks);
        let (first, rest) = blocks.split_at(k * k);
        assert!(
            rest.chunks_exact(k * k).all(|b| b == first),
            "{label}: blocks differ"
        );
        let c = gaussian_vec(&mut g, k * k, 1.0);
        let mut jac = DMat::zeros(m, d);
        res.jacobian_into(&theta, jac.as_mut());
        let cm = DMat::from_fn(k, k, |a, b| c[a * k + b]);
        let mut want = DMat::zeros(m, m);
        for group in &groups {
            let jg = DMat::from_fn(m, k, |q, a| jac[(q, group[a])]);
            want += &jg * &cm * jg.transpose();
        }
        let mut got = DMat::from_fn(m, m, |_, _| f64::NAN);
        res.shared_block_gram_into(&theta, &c, got.as_mut());
        let rel = (&got - &want).norm_l2() / want.norm_l2();
        assert!(
            rel < 1e-13,
            "{label} point {point}: J(I ⊗ C)Jᵀ off by {rel}"
        );
    }
    true
}

#[test]
fn the_shared_block_gram_matrix_is_the_one_through_the_jacobian() {
    let mut checked = Vec::new();
    for entry in registry() {
        let system = (entry.cheap)(3).expect("cheap instances are valid");
        if check_shared_gram(system.as_ref(), entry.name) {
            checked.push(entry.name);
        }
    }
    assert_eq!(checked, ["matrix-completion"], "systems sharing one block");
    // Rectangular, with a width above the rank.
    let rect = MatrixCompletion::generate(&CompletionParams {
        n1: 5,
        n2: 8,
        width: 4,
        seed: 2,
        ..CompletionParams::default()
    })
    .unwrap();
    assert!(check_shared_gram(&rect, "matrix-completion 5×8"));
}

/// A system whose residual structure is altered in one way, to show the check catches it.
struct Altered {
    inner: Box<dyn System>,
    how: Alteration,
}

#[derive(Clone, Copy, Debug)]
enum Alteration {
    /// The curvature blocks multiplied by this.
    Blocks(f64),
    /// J·v scaled by 1.01.
    Jvp,
    /// Jᵀu with one entry dropped.
    Vjp,
    /// The first two groups merged into one (the partition stays valid).
    MergedGroups,
    /// The first group split into single parameters (its curvature couples them).
    SplitGroup,
}

impl grokflow_engine::Loss for Altered {
    fn name(&self) -> &str {
        "altered"
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn value(&self, t: &[f64]) -> f64 {
        self.inner.value(t)
    }
    fn gradient_into(&self, t: &[f64], g: &mut [f64]) {
        self.inner.gradient_into(t, g);
    }
    fn hessian_into(&self, t: &[f64], h: grokflow_engine::la::MatMut<'_, f64>) {
        self.inner.hessian_into(t, h);
    }
    fn residuals(&self) -> Option<&dyn grokflow_engine::Residuals> {
        Some(self)
    }
}

impl grokflow_engine::Residuals for Altered {
    fn count(&self) -> usize {
        self.inner.residuals().unwrap().count()
    }
    fn scale(&self) -> f64 {
        self.inner.residuals().unwrap().scale()
    }
    fn residuals_into(&self, t: &[f64], r: &mut [f64]) {
        self.inner.residuals().unwrap().residuals_into(t, r);
    }
    fn jacobian_into(&self, t: &[f64], j: grokflow_engine::la::MatMut<'_, f64>) {
        self.inner.residuals().unwrap().jacobian_into(t, j);
    }
    fn jvp_into(&self, t: &[f64], v: &[f64], out: &mut [f64]) {
        self.inner.residuals().unwrap().jvp_into(t, v, out);
        if matches!(self.how, Alteration::Jvp) {
            out.iter_mut().for_each(|x| *x *= 1.01);
        }
    }
    fn vjp_into(&self, t: &[f64], u: &[f64], out: &mut [f64]) {
        self.inner.residuals().unwrap().vjp_into(t, u, out);
        if matches!(self.how, Alteration::Vjp) {
            out[0] = 0.0;
        }
    }
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        let mut g = self.inner.residuals().unwrap().curvature_groups()?;
        match self.how {
            Alteration::MergedGroups => {
                let second = g.remove(1);
                g[0].extend(second);
            }
            Alteration::SplitGroup => {
                let first = g.remove(0);
                for p in first.into_iter().rev() {
                    g.insert(0, vec![p]);
                }
            }
            _ => {}
        }
        Some(g)
    }
    fn curvature_blocks_into(&self, t: &[f64], out: &mut [f64]) {
        match self.how {
            Alteration::MergedGroups | Alteration::SplitGroup => {
                // The groups' blocks from the Hessian's own entries: exact, so that
                // only the partition claim (zero curvature between the old groups) is wrong
                // where it is wrong.
                let res = self.inner.residuals().unwrap();
                let groups = self.curvature_groups().unwrap();
                let (m, d) = (res.count(), self.inner.dim());
                let mut jac = grokflow_engine::la::DMat::zeros(m, d);
                res.jacobian_into(t, jac.as_mut());
                let h = self.inner.hessian(t);
                let jtj = jac.transpose() * &jac;
                let mut o = 0;
                for g in &groups {
                    for &a in g {
                        for &b in g {
                            out[o] = h[(a, b)] - jtj[(a, b)] / res.scale();
                            o += 1;
                        }
                    }
                }
            }
            _ => {
                self.inner
                    .residuals()
                    .unwrap()
                    .curvature_blocks_into(t, out);
                if let Alteration::Blocks(f) = self.how {
                    out.iter_mut().for_each(|x| *x *= f);
                }
            }
        }
    }
}

#[test]
fn the_check_catches_wrong_residual_structure() {
    // The two-layer network (non-zero residual curvature across its neuron blocks).
    let spec = registry().into_iter().find(|s| s.name == "relu").unwrap();
    let at = |how| {
        let a = Altered {
            inner: (spec.cheap)(7).unwrap(),
            how,
        };
        let theta = a.inner.theta_init().to_vec();
        let rep = check_derivatives(&a, &theta, 1e-6);
        (rep.passed, rep.failures())
    };
    for how in [
        Alteration::Blocks(0.0),
        Alteration::Blocks(-1.0),
        Alteration::Blocks(5.0),
        Alteration::Jvp,
        Alteration::Vjp,
    ] {
        let (passed, failures) = at(how);
        assert!(!passed, "{how:?} passed the check");
        eprintln!("{how:?}: {failures:?}");
    }
    // A split group claims a block structure the curvature does not have.
    let (passed, failures) = at(Alteration::SplitGroup);
    assert!(
        !passed && failures[0].contains("outside the curvature groups"),
        "{failures:?}"
    );
    // Merged groups are a true (coarser) block structure: the check accepts it.
    assert!(at(Alteration::MergedGroups).0);
    // Blocks multiplied by one are the truth.
    assert!(at(Alteration::Blocks(1.0)).0);
}
