"""Make ``assets/sinusoid_maml.pt`` and ``assets/sinusoid_pretrained.pt``: the Regression view's models.

The 2x40 MLP of Finn et al. 2017 trained on the sinusoid family at the paper's settings
(:class:`engine.regression.RegressionConfig` defaults: K = 5 support and 10 query points,
meta-batch 25, inner SGD lr 0.01 with 1 step, Adam 0.001, 70000 steps, seed 0), once
with second-order MAML and once as the pre-trained baseline; then both are evaluated on
600 fresh 5-shot tasks and the MSE after 1 and 10 fine-tuning steps is printed next to
the paper's figures. Each file is about 10 KB.

This is exactly ``meta-engine regression --out assets`` (plus any flags given here), so
the README's numbers and the shipped files come from one run. Deterministic: seeded
initialisation and sines, one CPU thread, so the weights are the same on every run (the
files also record the measured training time, which is not). Runtime: 12 min 40 s for
both models on a two-core machine shared with other jobs (MAML 548 s, the baseline
200 s, evaluation under a second). That run printed, 600 test tasks of K = 5:

    model              MSE after 1 step    MSE after 10 steps        paper (1 / 10)
    MAML                  0.562 ± 0.058         0.297 ± 0.038           0.67 / 0.35
    pre-trained           2.511 ± 0.193         2.158 ± 0.201           2.41 / 2.19

    python assets/make_sinusoid_models.py                 # writes both files into assets/
    python assets/make_sinusoid_models.py --steps 500 --out /tmp/quick
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.cli import main as cli_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--out" not in args:
        args += ["--out", str(REPO / "assets")]
    return cli_main(["regression", *args])


if __name__ == "__main__":
    sys.exit(main())
