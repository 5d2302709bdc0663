//! AdamW (decoupled weight decay; Loshchilov & Hutter), as torch's `AdamW` defines it, with one change:
//! the square root of the second moment is correctly rounded.
//!
//! Why hsx has its own: on the CPU, libtorch's float32 `sqrt` goes through MKL's vector maths, which is
//! neither correctly rounded nor the same on every processor, even under the portable pins
//! (`runtime::pins`): measured on 65,536 values, about 11,000 results differ from the correctly rounded
//! square root on an AMD EPYC and on an Intel Xeon, and the two machines disagree with each other. Every
//! other operation of a T5 + LoRA training step gave the same bits on both (`scripts/cpu-op-digests.py`),
//! but the optimiser's `sqrt` alone made every trained weight differ. A correctly rounded result is
//! unique, so it is the same everywhere: the second moment's root is computed in float64 and rounded
//! once to float32 (exact for every float32 input; [`portable_sqrt`] is tested against Rust's IEEE
//! `f32::sqrt`).
//!
//! The update, per parameter p with gradient g, at step t (from 1):
//!
//! ```text
//! p ← p · (1 − lr·wd)
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//!
//! **One flat buffer.** Every operation above is elementwise, so it gives the same bits on one
//! concatenation of all parameters as on each tensor apart. At the first update the optimiser moves the
//! parameters that have a gradient, and their gradients, into two flat buffers (each parameter's data and
//! gradient become views into them, so the variable store, autograd's in-place accumulation and
//! checkpointing see the same tensors), and each step is then a dozen whole-buffer kernels instead of a
//! dozen per tensor (144 LoRA tensors at flan-t5-base shape: about 1,700 launches). A parameter that has
//! no gradient at the first update (unused in the forward pass) is not moved; it is updated on its own
//! once it has one, as torch does (torch skips parameters whose gradient is undefined).
//!
//! **Clipping without a host read.** The joint norm is the norm of the per-tensor norms (per-tensor
//! reductions, as `clip_grad_norm_` does; one reduction over the flat buffer would sum in another order
//! and change the bits), and the coefficient `max / (norm + 1e-6)`, applied only when below 1, is
//! computed on the device in float64 from the float32 norm, exactly the arithmetic of reading the norm
//! back and computing it on the host, so the gradients are scaled without a device-to-host sync.
use tch::{Device, Kind, Tensor};

/// The optimiser's settings (torch's defaults are β = (0.9, 0.999), ε = 1e-8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// The parameters moved into flat buffers, with their moments.
struct Flat {
    /// Every moved parameter's data, concatenated (each parameter is a view into it).
    params: Tensor,
    /// Their gradients, in the same layout (each parameter's gradient is a view into it).
    grads: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// The gradient views, one per moved parameter, for the per-tensor norms of clipping.
    grad_views: Vec<Tensor>,
}

/// A parameter not (yet) in the flat buffer: it had no gradient at the first update.
struct Single {
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

pub struct AdamW {
    cfg: AdamWConfig,
    /// Before the first update: every parameter. After it: those not moved into `flat`.
    singles: Vec<Single>,
    flat: Option<Flat>,
    step: i32,
}

/// The correctly rounded square root of a float32 tensor (float64 root of the exact widening, rounded
/// once), on any device.
pub fn portable_sqrt(t: &Tensor) -> Tensor {
    t.to_kind(Kind::Double).sqrt().to_kind(t.kind())
}

/// One AdamW update of `p` in place (the update written out in the module's documentation); the same
/// kernels serve a single tensor and the flat buffer.
fn update(p: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, cfg: &AdamWConfig, bias1: f64, bias2_sqrt: f64) {
    let AdamWConfig { lr, beta1, beta2, eps, weight_decay } = *cfg;
    let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
    let _ = m.g_mul_scalar_(beta1);
    let _ = m.g_add_(&(g * (1.0 - beta1)));
    let _ = v.g_mul_scalar_(beta2);
    let _ = v.g_add_(&(g * g * (1.0 - beta2)));
    let denom = portable_sqrt(v) / bias2_sqrt + eps;
    let _ = p.g_sub_(&(&*m / &denom * (lr / bias1)));
}

impl AdamW {
    /// An optimiser over `params` (the trainable variables), with zeroed moments.
    pub fn new(params: Vec<Tensor>, cfg: AdamWConfig) -> AdamW {
        let singles = params
            .into_iter()
            .map(|param| {
                let zeros = param.zeros_like().detach();
                Single { exp_avg: zeros.copy(), exp_avg_sq: zeros, param }
            })
            .collect();
        AdamW { cfg, singles, flat: None, step: 0 }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// Zeroes every parameter's gradient in place (one kernel for the flat buffer).
    pub fn zero_grad(&mut self) {
        if let Some(f) = &mut self.flat {
            let _ = f.grads.zero_();
        }
        for s in &mut self.singles {
            s.param.zero_grad();
        }
    }

    /// Moves the parameters that have a gradient into the flat buffers (once, at the first update).
    /// Parameters of another dtype or device than the first such parameter stay single.
    fn flatten(&mut self) {
        if self.flat.is_some() {
            return;
        }
        let first = self.singles.iter().map(|s| s.param.grad()).find(Tensor::defined);
        let Some(first) = first else { return };
        let (kind, device): (Kind, Device) = (first.kind(), first.device());
        let (moved, kept): (Vec<Single>, Vec<Single>) = std::mem::take(&mut self.singles).into_iter().partition(|s| {
            let g = s.param.grad();
            g.defined() && s.param.kind() == kind && g.kind() == kind && s.param.device() == device
        });
        self.singles = kept;
        tch::no_grad(|| {
            let params = Tensor::cat(&moved.iter().map(|s| s.param.detach().reshape([-1])).collect::<Vec<_>>(), 0);
            let grads = Tensor::cat(&moved.iter().map(|s| s.param.grad().reshape([-1])).collect::<Vec<_>>(), 0);
            let mut grad_views = Vec::with_capacity(moved.len());
            let mut offset = 0i64;
            for s in &moved {
                let (n, shape) = (s.param.numel() as i64, s.param.size());
                let mut p = s.param.shallow_clone();
                p.set_data(&params.narrow(0, offset, n).view(shape.as_slice()));
                let mut g = s.param.grad();
                g.set_data(&grads.narrow(0, offset, n).view(shape.as_slice()));
                grad_views.push(g);
                offset += n;
            }
            self.flat =
                Some(Flat { exp_avg: params.zeros_like(), exp_avg_sq: params.zeros_like(), params, grads, grad_views });
        })
    }

    /// Scales the gradients so that their joint L2 norm is at most `max` (as `torch.nn.utils.
    /// clip_grad_norm_`: coefficient max / (norm + 1e-6), applied only when below 1), without reading
    /// anything back to the host.
    pub fn clip_grad_norm(&mut self, max: f64) {
        self.flatten();
        tch::no_grad(|| {
            let flat_views = self.flat.iter().flat_map(|f| f.grad_views.iter().map(Tensor::shallow_clone));
            let single_grads = self.singles.iter().map(|s| s.param.grad()).filter(Tensor::defined);
            let grads: Vec<Tensor> = flat_views.chain(single_grads).collect();
            let norms: Vec<Tensor> = grads.iter().map(Tensor::norm).collect();
            if norms.is_empty() {
                return;
            }
            // The float32 norm widened to float64, and the host's arithmetic, on the device.
            let total = Tensor::stack(&norms, 0).norm().to_kind(Kind::Double);
            let coef = Tensor::full([], max, (Kind::Double, total.device())) / (total + 1e-6);
            let one = coef.ones_like();
            // `where`, not a minimum: a NaN coefficient (NaN norm) leaves the gradients as they are, as
            // the host's `coef < 1.0` did.
            let coef = one.where_self(&coef.ge(1.0).logical_or(&coef.isnan()), &coef);
            if let Some(f) = &mut self.flat {
                let _ = f.grads.g_mul_(&coef.to_kind(f.grads.kind()));
            }
            for s in &self.singles {
                let mut g = s.param.grad();
                if g.defined() {
                    let _ = g.g_mul_(&coef.to_kind(g.kind()));
                }
            }
        })
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        self.flatten();
        self.step += 1;
        let bias1 = 1.0 - self.cfg.beta1.powi(self.step);
        let bias2_sqrt = (1.0 - self.cfg.beta2.powi(self.step)).sqrt();
        let cfg = self.cfg;
        tch::no_grad(|| {
            if let Some(f) = &mut self.flat {
                update(&mut f.params, &f.grads, &mut f.exp_avg, &mut f.exp_avg_sq, &cfg, bias1, bias2_sqrt);
            }
            for s in &mut self.singles {
                let g = s.param.grad();
                if g.defined() {
                    update(&mut s.param, &g, &mut s.exp_avg, &mut s.exp_avg_sq, &cfg, bias1, bias2_sqrt);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_sqrt_is_correctly_rounded() {
        // Every float32 exponent range the second moment takes, and then some: 2^-126 .. 2^60.
        let xs: Vec<f32> =
            (0..200_000u32).map(|i| f32::from_bits(0x0080_0000 + i.wrapping_mul(9_973_u32) % 0x5E00_0000)).collect();
        let t = Tensor::from_slice(&xs);
        let got: Vec<f32> = Vec::<f32>::try_from(portable_sqrt(&t)).unwrap();
        let wrong = xs.iter().zip(&got).filter(|(x, r)| x.sqrt().to_bits() != r.to_bits()).count();
        assert_eq!(wrong, 0, "{wrong} of {} square roots not correctly rounded", xs.len());
    }

    #[test]
    fn adamw_matches_the_update_written_out() {
        let p0 = [0.5f32, -1.25, 2.0, 0.0];
        let grads = [[0.1f32, -0.2, 0.3, 0.0], [-0.05, 0.4, 0.1, 1e-3]];
        let cfg = AdamWConfig { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let p = Tensor::from_slice(&p0).set_requires_grad(true);
        let mut opt = AdamW::new(vec![p.shallow_clone()], cfg);
        let (mut m, mut v, mut want) = ([0f64; 4], [0f64; 4], p0.map(f64::from));
        for (t, g) in grads.iter().enumerate() {
            opt.zero_grad();
            (&p * Tensor::from_slice(g)).sum(Kind::Float).backward();
            opt.step();
            let t = t as i32 + 1;
            for i in 0..4 {
                let gi = f64::from(g[i]);
                want[i] *= 1.0 - cfg.lr * cfg.weight_decay;
                m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * gi;
                v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * gi * gi;
                let denom = v[i].sqrt() / (1.0 - cfg.beta2.powi(t)).sqrt() + cfg.eps;
                want[i] -= cfg.lr / (1.0 - cfg.beta1.powi(t)) * m[i] / denom;
            }
        }
        let got: Vec<f32> = Vec::<f32>::try_from(p.detach()).unwrap();
        for i in 0..4 {
            assert!((f64::from(got[i]) - want[i]).abs() < 1e-6, "parameter {i}: {} vs {}", got[i], want[i]);
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let p = Tensor::from_slice(&[1.0f32, 1.0]).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![p.shallow_clone()],
            AdamWConfig { lr: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        );
        (&p * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
        opt.clip_grad_norm(1.0);
        let g: Vec<f32> = Vec::<f32>::try_from(p.grad()).unwrap();
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6, "{g:?}");
    }

    /// The optimiser as it was before the flat buffer (one update per tensor, clipping read back to the
    /// host), kept verbatim as the reference the flat one must equal bit for bit.
    struct PerTensor {
        cfg: AdamWConfig,
        params: Vec<Tensor>,
        exp_avg: Vec<Tensor>,
        exp_avg_sq: Vec<Tensor>,
        step: i32,
    }

    impl PerTensor {
        fn new(params: Vec<Tensor>, cfg: AdamWConfig) -> Self {
            let zeros = |p: &Tensor| p.zeros_like().detach();
            let exp_avg = params.iter().map(zeros).collect();
            let exp_avg_sq = params.iter().map(zeros).collect();
            PerTensor { cfg, params, exp_avg, exp_avg_sq, step: 0 }
        }
        fn zero_grad(&mut self) {
            for p in &mut self.params {
                p.zero_grad();
            }
        }
        fn clip_grad_norm(&mut self, max: f64) {
            tch::no_grad(|| {
                let norms: Vec<Tensor> =
                    self.params.iter().map(Tensor::grad).filter(Tensor::defined).map(|g| g.norm()).collect();
                if norms.is_empty() {
                    return;
                }
                let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
                let coef = max / (total + 1e-6);
                if coef < 1.0 {
                    for p in &self.params {
                        let mut g = p.grad();
                        if g.defined() {
                            let _ = g.g_mul_scalar_(coef);
                        }
                    }
                }
            })
        }
        fn step(&mut self) {
            self.step += 1;
            let AdamWConfig { lr, beta1, beta2, eps, weight_decay } = self.cfg;
            let bias1 = 1.0 - beta1.powi(self.step);
            let bias2_sqrt = (1.0 - beta2.powi(self.step)).sqrt();
            tch::no_grad(|| {
                for ((p, m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
                    let g = p.grad();
                    if !g.defined() {
                        continue;
                    }
                    let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
                    let _ = m.g_mul_scalar_(beta1);
                    let _ = m.g_add_(&(&g * (1.0 - beta1)));
                    let _ = v.g_mul_scalar_(beta2);
                    let _ = v.g_add_(&(&g * &g * (1.0 - beta2)));
                    let denom = portable_sqrt(v) / bias2_sqrt + eps;
                    let _ = p.g_sub_(&(&*m / &denom * (lr / bias1)));
                }
            })
        }
    }

    fn bits(ts: &[Tensor]) -> Vec<Vec<u32>> {
        ts.iter()
            .map(|t| Vec::<f32>::try_from(t.detach().reshape([-1])).unwrap().iter().map(|x| x.to_bits()).collect())
            .collect()
    }

    /// Trains the same parameters with the flat optimiser and the per-tensor reference through the same
    /// steps (two backward passes accumulated per step, clipping that bites on some steps and not on
    /// others, a parameter unused until step 3 and one never used) and compares every bit.
    #[test]
    fn flat_buffer_update_equals_the_per_tensor_update_bit_for_bit() {
        let shapes: [&[i64]; 6] = [&[8, 3], &[3, 8], &[5], &[16, 7], &[1], &[4, 4]];
        // Values from a seeded ChaCha8 stream, not libtorch's process-wide RNG (which a test running in
        // parallel may draw from between a seed and a draw).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut normal = |s: &[i64]| -> Tensor {
            let n: i64 = s.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.gen::<f32>() * 2.0 - 1.0).collect();
            Tensor::from_slice(&v).view(s)
        };
        let init: Vec<Tensor> = shapes.iter().map(|s| normal(s)).collect();
        // The loss's random multipliers, per step and micro-batch.
        let mult: Vec<Vec<Vec<Tensor>>> =
            (0..6).map(|_| (0..2).map(|_| shapes.iter().map(|s| normal(s)).collect()).collect()).collect();
        let fresh = || -> Vec<Tensor> { init.iter().map(|t| t.copy().set_requires_grad(true)).collect() };
        let (flat_p, ref_p) = (fresh(), fresh());
        let cfg = AdamWConfig { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let mut flat = AdamW::new(flat_p.iter().map(Tensor::shallow_clone).collect(), cfg);
        let mut reference = PerTensor::new(ref_p.iter().map(Tensor::shallow_clone).collect(), cfg);
        // Parameter 4 joins at step 3; parameter 5 never has a gradient.
        let loss = |ps: &[Tensor], step: usize, micro: usize| -> Tensor {
            let scale = if step.is_multiple_of(2) { 10.0 } else { 0.01 };
            let used = if step >= 3 { 5 } else { 4 };
            ps[..used]
                .iter()
                .zip(&mult[step][micro])
                .map(|(p, r)| (p * p * r * scale).sum(Kind::Float))
                .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b)
        };
        for step in 0..6 {
            flat.set_lr(cfg.lr * (1.0 - step as f64 / 10.0));
            reference.cfg.lr = cfg.lr * (1.0 - step as f64 / 10.0);
            flat.zero_grad();
            reference.zero_grad();
            for micro in 0..2 {
                (loss(&flat_p, step, micro) / 2.0).backward();
                (loss(&ref_p, step, micro) / 2.0).backward();
            }
            flat.clip_grad_norm(1.0);
            reference.clip_grad_norm(1.0);
            flat.step();
            reference.step();
            assert_eq!(bits(&flat_p), bits(&ref_p), "parameters differ after step {step}");
        }
        assert!(flat.flat.as_ref().is_some_and(|f| f.grad_views.len() == 4), "four parameters in the flat buffer");
        assert_eq!(bits(&flat_p[5..]), bits(&init[5..]), "the unused parameter is untouched");
        assert_ne!(bits(&flat_p[..1]), bits(&init[..1]), "the parameters moved");
    }
}
