"""Evaluation: benchmark cases from real photos, metrics, baselines, the benchmark runner and its report.

The paper's benchmark (GenArtifactBench, §4.1/§A.6) was never published, so refalign builds its own cases in the
case-folder format of DESIGN §4 (:mod:`refalign.eval.make_cases`) and measures any method on them
(:mod:`refalign.eval.runner`). Nothing heavy is imported here.
"""
