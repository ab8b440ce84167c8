"""Deterministic figures (mAP, AP per class, size, MACs, sparsity, parameters) against the
committed baselines in benchmarks/baselines/, with the tolerances of budgets.toml."""


def test_deterministic_baseline(variant, navya_suite):
    navya_suite.check_baseline(variant)
