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
use tch::{Kind, Tensor};

/// The optimiser's settings (torch's defaults are β = (0.9, 0.999), ε = 1e-8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    step: i32,
}

/// The correctly rounded square root of a float32 tensor (float64 root of the exact widening, rounded
/// once), on any device.
pub fn portable_sqrt(t: &Tensor) -> Tensor {
    t.to_kind(Kind::Double).sqrt().to_kind(t.kind())
}

impl AdamW {
    /// An optimiser over `params` (the trainable variables), with zeroed moments.
    pub fn new(params: Vec<Tensor>, cfg: AdamWConfig) -> AdamW {
        let zeros = |p: &Tensor| p.zeros_like().detach();
        let exp_avg = params.iter().map(zeros).collect();
        let exp_avg_sq = params.iter().map(zeros).collect();
        AdamW { cfg, params, exp_avg, exp_avg_sq, step: 0 }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// Zeroes every parameter's gradient in place.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Scales the gradients so that their joint L2 norm is at most `max` (as `torch.nn.utils.
    /// clip_grad_norm_`: coefficient max / (norm + 1e-6), applied only when below 1).
    pub fn clip_grad_norm(&mut self, max: f64) {
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

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
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
}
