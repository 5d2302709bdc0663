//! hsx's statistics against independent implementations (scipy's permutation_test, numpy's bootstrap,
//! a plain enumeration of cluster sign vectors): tests/fixtures/stats/make_stats_fixture.py wrote the
//! reference values. Exact p-values must agree exactly; Monte-Carlo quantities within Monte-Carlo error.
mod common;

use hsx::metrics::stats::{cluster_mean_ci, sign_flip_test, Clusters, Resampling, Side};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::repo_path("tests/fixtures/stats/stats_reference.json")).unwrap(),
    )
    .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn keys(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

const R: Resampling = Resampling { resamples: 10_000, seed: 11 };

#[test]
fn exact_sign_flip_p_equals_scipy_and_enumeration() {
    let f = fixture();
    let c = &f["cases"]["item_exact"];
    let d = floats(&c["d"]);
    let g = sign_flip_test(&d, &Clusters::singletons(d.len()), Side::Greater, R);
    let l = sign_flip_test(&d, &Clusters::singletons(d.len()), Side::Less, R);
    assert!(g.exact && l.exact);
    assert_eq!(g.k, 13);
    assert!((g.p - c["p_greater"].as_f64().unwrap()).abs() < 1e-12, "{} vs scipy {}", g.p, c["p_greater"]);
    assert!((l.p - c["p_less"].as_f64().unwrap()).abs() < 1e-12, "{} vs scipy {}", l.p, c["p_less"]);

    let c = &f["cases"]["cluster_exact"];
    let d = floats(&c["d"]);
    let cl = Clusters::from_keys(&keys(&c["keys"]));
    let g = sign_flip_test(&d, &cl, Side::Greater, R);
    let l = sign_flip_test(&d, &cl, Side::Less, R);
    assert!(g.exact && g.clusters_differing == cl.len());
    assert!((g.p - c["p_greater"].as_f64().unwrap()).abs() < 1e-12, "{} vs {}", g.p, c["p_greater"]);
    assert!((l.p - c["p_less"].as_f64().unwrap()).abs() < 1e-12, "{} vs {}", l.p, c["p_less"]);
}

#[test]
fn monte_carlo_sign_flip_p_within_monte_carlo_error_of_scipy() {
    let f = fixture();
    let c = &f["cases"]["item_monte_carlo"];
    let d = floats(&c["d"]);
    let t = sign_flip_test(&d, &Clusters::singletons(d.len()), Side::Greater, R);
    let reference = c["p_greater"].as_f64().unwrap();
    let se = (reference * (1.0 - reference) / R.resamples as f64).sqrt();
    assert!(!t.exact);
    assert!((t.p - reference).abs() < 4.0 * se, "hsx {} vs scipy {reference} (4 SE = {})", t.p, 4.0 * se);
}

#[test]
fn cluster_bootstrap_intervals_within_monte_carlo_error_of_numpy() {
    let f = fixture();
    for case in ["cluster_bootstrap", "strong_clusters"] {
        let c = &f["cases"][case];
        let v = floats(&c["v"]);
        for (clusters, reference) in [
            (Clusters::from_keys(&keys(&c["keys"])), floats(&c["ci95"])),
            (Clusters::singletons(v.len()), floats(&c["ci95_items"])),
        ] {
            let iv = cluster_mean_ci(&v, &clusters, 0.95, R);
            let width = reference[1] - reference[0];
            // The 2.5% / 97.5% quantiles of 10,000 resamples have a standard error of about 0.7% of the
            // interval's width; 5% is about 7 standard errors, while clustering changes widths by 50–170%.
            for (got, want) in [(iv.lo, reference[0]), (iv.hi, reference[1])] {
                assert!(
                    (got - want).abs() < 0.05 * width,
                    "{case} ({} clusters): {got} vs numpy {want}",
                    clusters.len()
                );
            }
        }
    }
}
