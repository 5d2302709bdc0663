//! bf16 autocast, checked where it can be: on the CPU here (libtorch autocasts on CPU too), on CUDA with
//! `HSX_TEST_DEVICE=cuda` (scripts/gpu-check.sh). On the small fixture T5 (tests/fixtures/t5), one LoRA
//! training step and one greedy generation under bf16 autocast agree with fp32 within stated tolerances,
//! and differ from it: a bf16 path that silently ran in fp32 would be bit-identical and fails here. The
//! base profile's settings (configs/base.toml) are shown to train under autocast, the tiny profile's not.
//!
//! Tolerances (bf16 keeps 8 significant bits, a relative rounding error of 2^-9 ≈ 0.2% per operation):
//! - loss: relative difference ≤ 2%;
//! - LoRA gradients: cosine similarity ≥ 0.99 and relative L2 difference ≤ 10%;
//! - first-step logits: max-abs difference ≤ 5% of the largest fp32 logit;
//! - greedy generation: bf16 output equals fp32 output, or departs from it only where fp32's top two
//!   logits are within that same 5% (a near-tie that bf16 rounding may break either way).
mod common;

use hsx::config::Config;
use hsx::model::adapter::load_t5_lora;
use hsx::model::lora::LoraConfig;
use hsx::model::train::{collate, train, Example, NoProgress, Recipe, Trainer};
use hsx::model::{generate, load_t5, GenerateOptions};
use hsx::runtime::{bf16_autocast_active, with_bf16_autocast};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn fixture() -> (std::path::PathBuf, Vec<(String, String)>) {
    let dir = common::repo_path("tests/fixtures/t5");
    let exp: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let texts = exp["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned());
    let targets = exp["targets"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned());
    (dir.join("model"), texts.zip(targets).collect())
}

fn lora_cfg() -> LoraConfig {
    LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["q".into(), "k".into(), "v".into(), "o".into(), "wi0".into(), "wi1".into(), "wo".into()],
    }
}

fn to_cpu_f64(t: &Tensor) -> Tensor {
    t.to_device(Device::Cpu).to_kind(Kind::Double)
}

#[test]
fn autocast_regions_compute_matmuls_in_bf16_nest_and_restore() {
    let _torch = common::torch_lock();
    let dev = common::test_device();
    let a = Tensor::randn([4, 8], (Kind::Float, dev));
    let b = Tensor::randn([8, 4], (Kind::Float, dev));
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
    assert!(!bf16_autocast_active(dev));
    with_bf16_autocast(true, dev, || {
        assert!(bf16_autocast_active(dev), "autocast did not switch on for {dev:?}");
        assert_eq!(a.matmul(&b).kind(), Kind::BFloat16, "a matmul under autocast on {dev:?} did not run in bf16");
        with_bf16_autocast(true, dev, || assert_eq!(a.matmul(&b).kind(), Kind::BFloat16));
        assert!(bf16_autocast_active(dev), "leaving a nested region switched autocast off");
    });
    assert!(!bf16_autocast_active(dev), "autocast stayed on after its region");
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
    with_bf16_autocast(false, dev, || assert_eq!(a.matmul(&b).kind(), Kind::Float));
}

/// Loss and LoRA gradients of one micro-batch, from the same initial adapter, in fp32 or under bf16.
fn loss_and_grads(bf16: bool) -> (f64, Vec<Tensor>) {
    let (dir, pairs) = fixture();
    let dev = common::test_device();
    tch::manual_seed(7);
    let (m, lora_vs) = load_t5_lora(&dir, dev, &lora_cfg(), None).unwrap();
    // LoRA's B starts at zero; give it values so that every adapter matrix carries a gradient signal.
    let mut named: Vec<(String, Tensor)> = lora_vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut v) in named {
            if name.contains("lora_B") {
                v.copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.05).to_device(dev));
            }
        }
    });
    let ex: Vec<Example> = pairs
        .iter()
        .map(|(x, y)| Example {
            input_ids: m.tokenizer.encode(x, None).unwrap(),
            labels: m.tokenizer.encode(y, None).unwrap(),
        })
        .collect();
    let mb = collate(&ex.iter().collect::<Vec<_>>(), 0, dev);
    let loss = with_bf16_autocast(bf16, dev, || m.model.loss(&mb.ids, &mb.mask, &mb.labels, false));
    assert_eq!(loss.kind(), Kind::Float, "the loss is reduced in fp32 in both modes");
    loss.backward();
    let mut vars: Vec<(String, Tensor)> = lora_vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    (loss.double_value(&[]), vars.iter().map(|(_, v)| to_cpu_f64(&v.grad())).collect())
}

#[test]
fn one_lora_training_step_under_bf16_agrees_with_fp32_within_tolerance() {
    let _torch = common::torch_lock();
    let (l32, g32) = loss_and_grads(false);
    let (l16, g16) = loss_and_grads(true);
    let rel = (l16 - l32).abs() / l32.abs();
    eprintln!("loss fp32 {l32:.6}, bf16 {l16:.6}, relative difference {rel:.2e}");
    assert!(rel <= 0.02, "bf16 loss {l16} vs fp32 {l32}: relative difference {rel} > 2%");
    let flat32 = Tensor::cat(&g32.iter().map(|g| g.view([-1])).collect::<Vec<_>>(), 0);
    let flat16 = Tensor::cat(&g16.iter().map(|g| g.view([-1])).collect::<Vec<_>>(), 0);
    let cos = (flat32.dot(&flat16) / (flat32.norm() * flat16.norm())).double_value(&[]);
    let rel_l2 = ((&flat16 - &flat32).norm() / flat32.norm()).double_value(&[]);
    eprintln!("LoRA gradients: cosine {cos:.5}, relative L2 difference {rel_l2:.2e}");
    assert!(cos >= 0.99, "LoRA gradient cosine similarity bf16 vs fp32 {cos} < 0.99");
    assert!(rel_l2 <= 0.10, "LoRA gradient relative L2 difference {rel_l2} > 10%");
    // Silent fp32 would give the same bits.
    assert!(
        l16 != l32 && !flat16.equal(&flat32),
        "bf16 autocast gave fp32's exact loss and gradients: it did not engage"
    );
}

#[test]
fn greedy_generation_under_bf16_agrees_with_fp32_within_tolerance() {
    let _torch = common::torch_lock();
    let (dir, pairs) = fixture();
    let dev = common::test_device();
    let m = load_t5(&dir, dev).unwrap();
    let inputs: Vec<Vec<i64>> = pairs.iter().map(|(x, _)| m.tokenizer.encode(x, None).unwrap()).collect();
    let (ids, mask) = hsx::model::tokenizer::pad_batch(&inputs, 0, dev);
    let start = Tensor::zeros([ids.size()[0], 1], (Kind::Int64, dev));
    // Decoder logits for a batch of decoder inputs, fp32 or under bf16.
    let logits = |dec: &Tensor, bf16: bool| {
        tch::no_grad(|| {
            with_bf16_autocast(bf16, dev, || {
                let enc = m.model.encode(&ids, &mask, false);
                to_cpu_f64(&m.model.decode(dec, &enc, &mask, None, false))
            })
        })
    };
    let first32 = logits(&start, false);
    let first16 = logits(&start, true);
    let scale = first32.abs().max().double_value(&[]);
    let tol = 0.05 * scale;
    let d = (&first16 - &first32).abs().max().double_value(&[]);
    eprintln!("first-step logits: max-abs difference {d:.3e} (tolerance {tol:.3e}, largest logit {scale:.3})");
    assert!(d <= tol, "first-step logits differ by {d} > 5% of the largest logit {scale}");
    assert!(d > 0.0, "bf16 autocast gave fp32's exact logits: it did not engage");

    let n = 12;
    let opts = |bf16| GenerateOptions { max_new_tokens: n, bf16, ..Default::default() };
    let out32 = generate(&m.model, &inputs, &opts(false));
    let out16 = generate(&m.model, &inputs, &opts(true));
    let mut same = 0;
    for (i, (a, b)) in out32.iter().zip(&out16).enumerate() {
        if a == b {
            same += 1;
            continue;
        }
        // The first step where they part: fp32's logits there, given the common prefix.
        let k = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let prefix: Vec<i64> = std::iter::once(0).chain(a[..k].iter().copied()).collect();
        let dec = Tensor::from_slice(&prefix).unsqueeze(0).to_device(dev);
        let row_ids = ids.narrow(0, i as i64, 1);
        let row_mask = mask.narrow(0, i as i64, 1);
        let l = tch::no_grad(|| {
            let enc = m.model.encode(&row_ids, &row_mask, false);
            to_cpu_f64(&m.model.decode(&dec, &enc, &row_mask, None, false)).select(1, k as i64).squeeze()
        });
        let margin = l.double_value(&[a[k]]) - l.double_value(&[b[k]]);
        eprintln!("text {i}: bf16 departs at step {k}, fp32 margin between the two tokens {margin:.3e}");
        assert!(
            margin <= tol,
            "text {i}: bf16 greedy departs from fp32 at step {k} where fp32 prefers its token by {margin} > {tol}"
        );
    }
    eprintln!("{same} of {} greedy outputs identical in bf16 and fp32", inputs.len());
}

/// Trains one optimiser step on the fixture with the recipe a config's stages build, and returns what
/// the training report says it computed in.
fn precision_trained_under(config: &str) -> String {
    let cfg = Config::load(&common::repo_path(config)).unwrap();
    let (dir, pairs) = fixture();
    let dev = common::test_device();
    tch::manual_seed(1);
    let (m, lora_vs) = load_t5_lora(&dir, dev, &lora_cfg(), None).unwrap();
    let ex: Vec<Example> = pairs
        .iter()
        .map(|(x, y)| Example {
            input_ids: m.tokenizer.encode(x, None).unwrap(),
            labels: m.tokenizer.encode(y, None).unwrap(),
        })
        .collect();
    // The same call the train stage makes: Recipe::from_config(&cfg.train, seed, cfg.runtime.bf16()).
    let mut recipe = Recipe::from_config(&cfg.train, 0, cfg.runtime.bf16());
    recipe.hyper.epochs = 1;
    recipe.hyper.batch_size = ex.len();
    recipe.hyper.grad_accum = 1;
    let total = hsx::model::train::parameter_count(&m.vs) + hsx::model::train::parameter_count(&lora_vs);
    let rep = train(&m.model, &lora_vs, total, &ex, &[], &recipe, 0, &NoProgress).unwrap();
    assert_eq!(rep.optimizer_steps, 1);
    rep.compute_precision.to_owned()
}

#[test]
fn the_base_profile_trains_under_bf16_autocast_and_the_tiny_profile_in_fp32() {
    let _torch = common::torch_lock();
    assert_eq!(
        precision_trained_under("configs/base.toml"),
        "bf16 autocast",
        "configs/base.toml's training did not run under autocast"
    );
    assert_eq!(precision_trained_under("configs/base-rehearsal.toml"), "bf16 autocast");
    assert_eq!(precision_trained_under("configs/tiny.toml"), "fp32");
    // The trainer's own evidence, step by step.
    let (dir, pairs) = fixture();
    let dev = common::test_device();
    let (m, lora_vs) = load_t5_lora(&dir, dev, &lora_cfg(), None).unwrap();
    let ex: Vec<Example> = pairs
        .iter()
        .map(|(x, y)| Example {
            input_ids: m.tokenizer.encode(x, None).unwrap(),
            labels: m.tokenizer.encode(y, None).unwrap(),
        })
        .collect();
    let mb = collate(&ex.iter().collect::<Vec<_>>(), 0, dev);
    for bf16 in [false, true] {
        let recipe = Recipe::from_config(&hsx::config::Train::default(), 0, bf16);
        let mut tr = Trainer::new(&m.model, &lora_vs, recipe, 1).unwrap();
        tr.step(std::slice::from_ref(&mb), false);
        assert_eq!(tr.bf16_autocast_seen, bf16);
    }
}
