//! hsx: the human/synthetic data-quality experiment (CosmosQA, flan-t5 + LoRA) as a reproducibility
//! artifact. See README.md, docs/DESIGN.md (the experiment and
//! its decisions) and docs/ARCHITECTURE.md (the modules and where each kind of change goes).
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
pub mod stages;
pub mod compare;
pub mod pipeline;
pub mod report;
pub mod reproduce;
