//! `Config::validate`: ranges and cross-field rules, each failure naming its dotted key.
use super::*;

/// The most training seeds `experiment.replicates` may list.
pub const MAX_REPLICATES: usize = 64;

impl Config {
    /// Checks ranges and cross-field rules; on failure returns (dotted key, what is allowed).
    pub fn validate(&self) -> Result<(), (String, String)> {
        fn err<T>(key: &str, msg: impl Into<String>) -> Result<T, (String, String)> {
            Err((key.to_owned(), msg.into()))
        }
        fn unit(key: &str, v: f64, lo_open: bool, hi_open: bool) -> Result<(), (String, String)> {
            let lo_ok = if lo_open { v > 0.0 } else { v >= 0.0 };
            let hi_ok = if hi_open { v < 1.0 } else { v <= 1.0 };
            if v.is_finite() && lo_ok && hi_ok {
                Ok(())
            } else {
                let lo = if lo_open { "(0" } else { "[0" };
                let hi = if hi_open { "1)" } else { "1]" };
                err(key, format!("must be in {lo}, {hi}, got {v}"))
            }
        }
        fn positive(key: &str, v: usize) -> Result<(), (String, String)> {
            if v == 0 {
                err(key, "must be at least 1")
            } else {
                Ok(())
            }
        }
        fn positive_f(key: &str, v: f64) -> Result<(), (String, String)> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                err(key, format!("must be a positive number, got {v}"))
            }
        }
        fn check_arch(arch: &T5Arch) -> Result<(), (String, String)> {
            positive("model.arch.d_model", arch.d_model)?;
            positive("model.arch.d_ff", arch.d_ff)?;
            positive("model.arch.d_kv", arch.d_kv)?;
            positive("model.arch.num_heads", arch.num_heads)?;
            positive("model.arch.num_layers", arch.num_layers)?;
            positive("model.arch.num_decoder_layers", arch.num_decoder_layers)?;
            positive("model.arch.relative_attention_num_buckets", arch.relative_attention_num_buckets)?;
            if arch.relative_attention_max_distance < arch.relative_attention_num_buckets {
                return err(
                    "model.arch.relative_attention_max_distance",
                    "must be at least relative_attention_num_buckets",
                );
            }
            unit("model.arch.dropout_rate", arch.dropout_rate, false, true)
        }
        fn check_tokenizer(tokenizer: &TokenizerSpec) -> Result<(), (String, String)> {
            if tokenizer.vocab_size < tokenizer.extra_ids + 259 {
                return err(
                    "model.tokenizer.vocab_size",
                    format!("must be at least extra_ids + 259 = {}", tokenizer.extra_ids + 259),
                );
            }
            Ok(())
        }
        /// A path that must stay inside the workspace (or the run directory): relative, no `..`
        /// component, no control character; every write below it goes through `crate::fsx`.
        fn relative_path(key: &str, p: &str) -> Result<(), (String, String)> {
            let path = Path::new(p);
            if p.is_empty() || path.is_absolute() {
                return err(key, format!("must be a non-empty relative path, got {p:?}"));
            }
            if path.components().any(|c| c == std::path::Component::ParentDir) {
                return err(key, format!("must stay inside the workspace: {p:?} climbs out of it with '..'"));
            }
            if p.chars().any(char::is_control) || p.contains('\\') {
                return err(key, format!("must be a plain path: {p:?} holds a control character or a backslash"));
            }
            Ok(())
        }

        let e = &self.experiment;
        if e.id.is_empty()
            || e.id.len() > 64
            || !e.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            || e.id.starts_with('.')
        {
            return err("experiment.id", "must be 1-64 characters of A-Z a-z 0-9 - _ . (not starting with '.')");
        }
        relative_path("experiment.runs_dir", &e.runs_dir)?;
        if let Some(r) = &e.replicates {
            if r.is_empty() || r.len() > MAX_REPLICATES {
                return err(
                    "experiment.replicates",
                    format!("must list 1 to {MAX_REPLICATES} training seeds, got {}", r.len()),
                );
            }
            if !r.contains(&e.seed) {
                return err(
                    "experiment.replicates",
                    format!(
                        "must include the master seed experiment.seed = {} (its replicate keeps the plain stage names)",
                        e.seed
                    ),
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(d) = r.iter().find(|s| !seen.insert(**s)) {
                return err(
                    "experiment.replicates",
                    format!("lists seed {d} twice; each replicate needs its own seed"),
                );
            }
        }
        let as_json = serde_json::to_value(self).expect("a config serialises");
        if let Some((key, what)) = control_character(&as_json, "") {
            return err(
                &key,
                format!("holds {what}; a config string is one line of plain text (the report prints it)"),
            );
        }
        // The config is recorded in every ledger entry, whose numbers must lie in I-JSON's exact range.
        if let Some(n) = crate::canonical::first_non_i_json_number(&as_json) {
            return err(
                &n.path,
                format!(
                    "{} is too large: the config is recorded in the ledger, whose numbers RFC 8785 tools read \
                     exactly only up to {} (2^53 - 1)",
                    n.number,
                    crate::canonical::I_JSON_MAX_INTEGER
                ),
            );
        }
        if let Some(k) = seed::stale_reasons(&as_json).first() {
            return err(&format!("deviations.\"{k}\""), format!("{k} does not depart from the seed's specification (or is not one of its settings); remove this reason"));
        }
        relative_path("experiment.report_dir", &e.report_dir)?;
        if let Some(s) = &self.slurm {
            let plan = crate::stages::registry::Instance::plan(e.seed, &e.replicate_seeds());
            s.validate(&|k| {
                ["train", "evaluate"].contains(&k) || plan.iter().any(|i| i.stage.name() == k || i.name() == k)
            })?;
        }
        positive("runtime.threads", self.runtime.threads)?;

        relative_path("data.dir", &self.data.dir)?;
        if self.data.files.is_empty() {
            return err("data.files", "must list at least one file (train.csv, valid.csv, *.jsonl)");
        }
        for f in &self.data.files {
            let ok = (f.ends_with(".csv") || f.ends_with(".jsonl"))
                && !f.contains('/')
                && !f.contains('\\')
                && !f.starts_with('.');
            if !ok {
                return err("data.files", format!("{f:?} must be a plain file name ending in .csv or .jsonl"));
            }
        }
        if self.data.max_row_bytes < 256 {
            return err("data.max_row_bytes", "must be at least 256");
        }

        positive("split.train", self.split.train)?;
        positive("split.val", self.split.val)?;
        positive("split.test", self.split.test)?;

        match &self.model {
            ModelSpec::HfDir { path } => relative_path("model.path", path)?,
            ModelSpec::Random { arch, vocab_size, tokenizer } => {
                check_arch(arch)?;
                check_tokenizer(tokenizer)?;
                if tokenizer.vocab_size > *vocab_size {
                    return err(
                        "model.tokenizer.vocab_size",
                        format!("must be at most model.vocab_size = {vocab_size}"),
                    );
                }
            }
            ModelSpec::Scratch { arch, tokenizer, pretrain } => {
                check_arch(arch)?;
                check_tokenizer(tokenizer)?;
                positive("model.pretrain.steps", pretrain.steps)?;
                positive("model.pretrain.batch_size", pretrain.batch_size)?;
                positive_f("model.pretrain.lr", pretrain.lr)?;
                unit("model.pretrain.noise_density", pretrain.noise_density, true, true)?;
                if pretrain.mean_noise_span_length.is_nan() || pretrain.mean_noise_span_length < 1.0 {
                    return err("model.pretrain.mean_noise_span_length", "must be at least 1");
                }
                if let Some(w) = pretrain.warmup_share {
                    unit("model.pretrain.warmup_share", w, false, true)?;
                }
                if pretrain.max_input_tokens < 8 {
                    return err("model.pretrain.max_input_tokens", "must be at least 8");
                }
                if !(pretrain.heldout_share.is_finite() && (0.0..=0.5).contains(&pretrain.heldout_share)) {
                    return err(
                        "model.pretrain.heldout_share",
                        format!("must be in [0, 0.5], got {}", pretrain.heldout_share),
                    );
                }
            }
        }

        positive("lora.r", self.lora.r)?;
        positive_f("lora.alpha", self.lora.alpha)?;
        unit("lora.dropout", self.lora.dropout, false, true)?;
        if self.lora.targets.is_empty() {
            return err("lora.targets", "must name at least one of q, k, v, o, wi_0, wi_1, wo");
        }
        let mut t = self.lora.targets.clone();
        t.sort();
        t.dedup();
        if t.len() != self.lora.targets.len() {
            return err("lora.targets", "lists a module twice");
        }

        let tr = &self.train;
        positive("train.epochs", tr.epochs)?;
        positive("train.batch_size", tr.batch_size)?;
        positive("train.grad_accum", tr.grad_accum)?;
        positive_f("train.lr", tr.lr)?;
        if !(tr.weight_decay.is_finite() && tr.weight_decay >= 0.0) {
            return err("train.weight_decay", "must be zero or positive");
        }
        positive_f("train.max_grad_norm", tr.max_grad_norm)?;
        unit("generator.val_share", self.generator.val_share, false, true)?;
        if let Some(w) = tr.warmup_share {
            unit("train.warmup_share", w, false, true)?;
        }
        unit("train.adam_beta1", tr.adam_beta1, false, true)?;
        unit("train.adam_beta2", tr.adam_beta2, false, true)?;
        positive_f("train.adam_eps", tr.adam_eps)?;
        positive("train.max_input_tokens", tr.max_input_tokens)?;
        positive("train.max_target_tokens", tr.max_target_tokens)?;
        positive("train.log_every", tr.log_every)?;

        let c = &self.contaminate;
        unit("contaminate.ai_share", c.ai_share, false, false)?;
        if !(c.temperature.is_finite() && c.temperature >= 0.0) {
            return err("contaminate.temperature", "must be zero (greedy) or positive");
        }
        unit("contaminate.top_p", c.top_p, true, false)?;
        positive("contaminate.max_new_tokens", c.max_new_tokens)?;
        positive("contaminate.batch_size", c.batch_size)?;

        positive("generator.epochs", self.generator.epochs)?;

        let s = &self.synth;
        positive_f("synth.multiplier", s.multiplier)?;
        if !(s.temperature.is_finite() && s.temperature >= 0.0) {
            return err("synth.temperature", "must be zero (greedy) or positive");
        }
        unit("synth.top_p", s.top_p, true, false)?;
        positive("synth.max_new_tokens", s.max_new_tokens)?;
        positive("synth.batch_size", s.batch_size)?;
        if !(s.max_attempts_factor.is_finite() && s.max_attempts_factor >= 1.0) {
            return err("synth.max_attempts_factor", "must be at least 1");
        }
        unit("synth.share_question_variants", s.share_question_variants, false, false)?;
        unit("synth.share_context_augmentation", s.share_context_augmentation, false, false)?;
        unit("synth.share_answer_expansion", s.share_answer_expansion, false, false)?;
        let total = s.share_question_variants + s.share_context_augmentation + s.share_answer_expansion;
        if (total - 1.0).abs() > 1e-9 {
            return err(
                "synth.share_question_variants",
                format!("the three strategy shares must sum to 1, got {total}"),
            );
        }

        let f = &self.filters;
        positive("filters.ngram_n", f.ngram_n)?;
        unit("filters.ngram_max_overlap", f.ngram_max_overlap, true, false)?;
        unit("filters.semantic_max_cosine", f.semantic_max_cosine, true, false)?;
        positive("filters.embed_batch_size", f.embed_batch_size)?;
        positive("filters.minhash_shingle_words", f.minhash_shingle_words)?;
        positive("filters.minhash_bands", f.minhash_bands)?;
        positive("filters.minhash_rows", f.minhash_rows)?;
        if f.minhash_bands * f.minhash_rows != f.minhash_permutations {
            return err(
                "filters.minhash_permutations",
                format!("must equal minhash_bands × minhash_rows = {}", f.minhash_bands * f.minhash_rows),
            );
        }
        unit("filters.minhash_jaccard", f.minhash_jaccard, true, false)?;
        positive("filters.min_words", f.min_words)?;
        if f.max_words < f.min_words {
            return err("filters.max_words", format!("must be at least min_words ({})", f.min_words));
        }
        if !super::FILTER_SCOPES.contains(&f.scope.as_str()) {
            return err("filters.scope", format!("must be one of {:?}, got {:?}", super::FILTER_SCOPES, f.scope));
        }

        let ev = &self.eval;
        positive("eval.batch_size", ev.batch_size)?;
        positive("eval.max_new_tokens", ev.max_new_tokens)?;
        if ev.bootstrap_resamples < 1000 {
            return err("eval.bootstrap_resamples", "must be at least 1000 for a 95% interval");
        }
        if ev.permutation_resamples < 1000 {
            return err("eval.permutation_resamples", "must be at least 1000");
        }
        if !ev.bertscore_model.is_empty() {
            relative_path("eval.bertscore_model", &ev.bertscore_model)?;
        }

        let an = &self.analysis;
        if !super::PRIMARY_METRICS.contains(&an.primary_metric.as_str()) {
            return err(
                "analysis.primary_metric",
                format!("must be one of {:?}, got {:?}", super::PRIMARY_METRICS, an.primary_metric),
            );
        }
        if !(an.alpha.is_finite() && an.alpha > 0.0 && an.alpha < 0.5) {
            return err("analysis.alpha", format!("must be a one-sided level in (0, 0.5), got {}", an.alpha));
        }
        positive_f("analysis.equivalence_margin", an.equivalence_margin)?;
        if an.bootstrap_resamples < 1000 {
            return err("analysis.bootstrap_resamples", "must be at least 1000");
        }
        if an.permutation_resamples < 1000 {
            return err("analysis.permutation_resamples", "must be at least 1000");
        }
        if an.cluster != "context" && an.cluster != "item" {
            return err("analysis.cluster", format!("must be \"context\" or \"item\", got {:?}", an.cluster));
        }
        Ok(())
    }
}

/// The first string (or key) of the config holding a control character or an invisible direction
/// override or separator: its dotted key and the character, named. Such text would change what a
/// reader of the report or of a terminal sees (a line feed in a deviation's reason starts a new
/// section of REPORT.md); the report escapes it anyway, but a config must not hold it.
fn control_character(v: &serde_json::Value, path: &str) -> Option<(String, String)> {
    let bad = |s: &str| {
        s.chars().find(|c| {
            c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
    };
    let name = |c: char| {
        let what = match c {
            '\n' => " (a line feed)",
            '\r' => " (a carriage return)",
            '\t' => " (a tab)",
            _ => "",
        };
        format!("the control character U+{:04X}{what}", c as u32)
    };
    let key = |k: &str| {
        let k = if k.contains('.') || bad(k).is_some() { format!("{k:?}") } else { k.to_owned() };
        if path.is_empty() {
            k
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        serde_json::Value::String(s) => bad(s).map(|c| (path.to_owned(), name(c))),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, x)| control_character(x, &format!("{path}[{i}]")))
        }
        serde_json::Value::Object(m) => m.iter().find_map(|(k, x)| match bad(k) {
            Some(c) => Some((key(k), format!("{} in the key itself", name(c)))),
            None => control_character(x, &key(k)),
        }),
        _ => None,
    }
}
