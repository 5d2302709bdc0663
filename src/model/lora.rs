//! LoRA (Hu et al., 2021) as `peft` defines it: `y = W x + (B A dropout(x)) · alpha / r`.
//!
//! `lora_A` [r, in] is initialised as peft does (Kaiming-uniform with a = √5, i.e. U(−1/√in, 1/√in)),
//! `lora_B` [out, r] with zeros, so an untrained adapter leaves the model unchanged. Adapters live in their
//! own `VarStore` under peft's key names (`base_model.model.<module path>.lora_A.weight`), so the adapter
//! saves alone as `adapter_model.safetensors`.
use super::gemm;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Which modules get adapters, and their shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names as in the checkpoint: q, k, v, o, wi_0, wi_1, wo.
    pub targets: Vec<String>,
}

/// An adapter to create for one linear layer.
pub struct LoraSpec<'a> {
    pub path: nn::Path<'a>,
    pub r: usize,
    pub scaling: f64,
    pub dropout: f64,
}

#[derive(Debug)]
pub struct Lora {
    pub a: Tensor,
    pub b: Tensor,
    pub scaling: f64,
    pub dropout: f64,
}

/// A bias-free linear layer (all T5 projections), optionally with a LoRA adapter.
#[derive(Debug)]
pub struct LoraLinear {
    /// The base weight's checkpoint name (`encoder.block.0.layer.0.SelfAttention.q.weight`).
    pub name: String,
    pub weight: Tensor,
    pub lora: Option<Lora>,
}

impl LoraLinear {
    pub fn new(p: nn::Path, in_dim: usize, out_dim: usize, lora: Option<LoraSpec>) -> Self {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let weight = p.var("weight", &[out_dim as i64, in_dim as i64], nn::Init::Uniform { lo: -bound, up: bound });
        let lora = lora.map(|s| {
            let a = s.path.sub("lora_A").var(
                "weight",
                &[s.r as i64, in_dim as i64],
                nn::Init::Uniform { lo: -bound, up: bound },
            );
            let b = s.path.sub("lora_B").var("weight", &[out_dim as i64, s.r as i64], nn::Init::Const(0.0));
            Lora { a, b, scaling: s.scaling, dropout: s.dropout }
        });
        Self { name: p.path("weight"), weight, lora }
    }

    /// The weight with the adapter folded in: `W + B A · scaling`.
    pub fn merged(&self) -> Tensor {
        tch::no_grad(|| match &self.lora {
            None => self.weight.detach().copy(),
            Some(l) => &self.weight.detach() + l.b.detach().matmul(&l.a.detach()) * l.scaling,
        })
    }

    /// x: [..., in] -> [..., out]. Each product is [`gemm::matmul_t`]: on the CPU in float32 the portable
    /// multiply, whose bits are the same on every x86-64 CPU with AVX2 and FMA, forward and backward.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = gemm::matmul_t(x, &self.weight);
        match &self.lora {
            None => y,
            Some(l) => {
                let z = gemm::matmul_t(&gemm::matmul_t(&x.dropout(l.dropout, train), &l.a), &l.b);
                y + z * l.scaling
            }
        }
    }
}
