//! hsx: the human/synthetic data-quality experiment (CosmosQA, flan-t5 + LoRA) as a reproducibility
//! artifact. See DESIGN.md in the shared folder and README.md; modules are listed in dependency order.
pub mod canonical;
pub mod config;
pub mod ledger;
pub mod provenance;
pub mod data;
pub mod runtime;
pub mod model;
pub mod metrics;
pub mod synth;
pub mod stages;
pub mod compare;
pub mod pipeline;
pub mod report;
pub mod reproduce;
pub mod repro_stats;
