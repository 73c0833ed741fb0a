use super::*;

#[test]
fn sources_parse_builtins_by_prefix_or_bare_name() {
    assert_eq!(
        "builtin:random".parse::<StrategySource>().unwrap(),
        StrategySource::Builtin("random".into())
    );
    assert_eq!(
        "least-connections".parse::<StrategySource>().unwrap(),
        StrategySource::Builtin("least-connections".into())
    );
    assert_eq!(
        "./my.wasm".parse::<StrategySource>().unwrap(),
        StrategySource::File("./my.wasm".into())
    );
    assert!("".parse::<StrategySource>().is_err());
}

#[test]
fn reason_names_are_unique_and_indexed() {
    let names: std::collections::HashSet<_> =
        FallbackReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), FallbackReason::ALL.len());
    for (i, r) in FallbackReason::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
}

#[test]
fn random_numbers_spread() {
    let mut buckets = [0u32; 8];
    for _ in 0..8000 {
        buckets[(random_u64() % 8) as usize] += 1;
    }
    assert!(
        buckets.iter().all(|&b| (800..1200).contains(&b)),
        "{buckets:?}"
    );
}

#[test]
fn rate_limit_allows_a_burst_then_counts_the_rest() {
    let limit = log::RateLimit::new(3);
    let allowed = (0..10).filter(|_| limit.allow().is_some()).count();
    // Three per second; a second boundary in the middle allows at most three more.
    assert!((3..=6).contains(&allowed), "{allowed}");
}
