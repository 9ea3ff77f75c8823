//! Every system's gradient, Hessian and Hessian-vector product against finite differences,
//! at θ_init and at random points, through the one generic check.

use grokflow_engine::check_derivatives;
use grokflow_systems::data::{gaussian_vec, rng};
use grokflow_systems::{registry, Activation, ReluParams, System, TwoLayerNetwork};

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
        assert!(
            rep.hvp < 1e-10,
            "{label} point {k}: Hessian-vector product {rep:?}"
        );
    }
}

#[test]
fn every_system_passes_the_derivative_check() {
    for entry in registry() {
        let system = (entry.cheap)(3).expect("cheap instances are valid");
        check(system.as_ref(), entry.name);
    }
}

#[test]
fn both_activations_pass_the_derivative_check() {
    for activation in [
        Activation::Relu,
        Activation::Softplus { beta: 1.0 },
        Activation::Softplus { beta: 20.0 },
    ] {
        let p = ReluParams {
            width: 8,
            n: 5,
            activation,
            seed: 4,
            ..ReluParams::default()
        };
        let net = TwoLayerNetwork::generate(&p).unwrap();
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
