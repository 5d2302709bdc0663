//! hsx: the human/synthetic data-quality experiment (CosmosQA, flan-t5 + LoRA) as a reproducibility
//! artifact. See README.md, docs/DESIGN.md (the experiment and its decisions) and docs/ARCHITECTURE.md
//! (the rooms and the arrows between them).
//!
//! Ground floor (no hsx imports above it): `canonical`, `config`, `ledger`, `provenance`, `data`,
//! `runtime`, `model`, `metrics`, `synth`. Top floor: `stages` (one file per stage), `pipeline` (the
//! executor), `report`, `reproduce`, `audit` (verify), `export`, `bench`; `error` and `progress` are shared by it.
pub mod analysis;
pub mod audit;
pub mod bench;
pub mod canonical;
pub mod config;
pub mod data;
pub mod error;
pub mod export;
pub mod ledger;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod prereg;
pub mod progress;
pub mod provenance;
pub mod report;
pub mod repro_stats;
pub mod reproduce;
pub mod runtime;
pub mod slurm;
pub mod stages;
pub mod synth;
