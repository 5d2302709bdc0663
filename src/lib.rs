//! hsx: the human/synthetic data-quality experiment (CosmosQA, flan-t5 + LoRA) as a reproducibility
//! artifact. See README.md, docs/DESIGN.md (the experiment and its decisions) and docs/ARCHITECTURE.md
//! (the rooms and the arrows between them).
//!
//! Ground floor (no hsx imports above it): `canonical`, `config`, `ledger`, `provenance`, `data`,
//! `runtime`, `model`, `metrics`, `synth`. Top floor: `stages` (one file per stage), `pipeline` (the
//! executor), `report`, `reproduce`, `audit` (verify), `bench`; `error` and `progress` are shared by it.
pub mod canonical;
pub mod config;
pub mod ledger;
pub mod provenance;
pub mod data;
pub mod runtime;
pub mod prereg;
pub mod analysis;
pub mod model;
pub mod metrics;
pub mod synth;
pub mod error;
pub mod progress;
pub mod stages;
pub mod pipeline;
pub mod slurm;
pub mod report;
pub mod reproduce;
pub mod audit;
pub mod bench;
pub mod repro_stats;
