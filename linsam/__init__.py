"""linsam: a theory-verification toolkit for "Why is SAM Robust to Label Noise?".

Baek, Kolter, Raghunathan, ICLR 2024 (arXiv:2405.03676). Closed-form and autodiff
SAM-family update rules on logistic regression, linear softmax and 2-layer deep
linear networks; symbolic derivations; simulators; figures and paper checks.
"""

__version__ = "0.1.0"
