"""Entropy and mutual information of discrete labels, in nats (pure NumPy).

The supplementary's formula (section 1.1): `MI(X; Y) = sum_{b, b'} Pr(X=b, Y=b') *
ln[Pr(X=b, Y=b') / (Pr(X=b) * Pr(Y=b'))]`, natural log, so a balanced binary X has
`H(X) = ln 2 = 0.69`. Probabilities are the empirical frequencies of the paired samples.
"""

import numpy as np


def joint_distribution(x, y):
    """Empirical joint distribution of paired labels.

    Args:
        x, y: int-like (n,) label arrays of the same length n >= 1 (any label values).

    Returns:
        float64 (|values of x|, |values of y|) probabilities summing to 1.
    """
    x, y = np.asarray(x).ravel(), np.asarray(y).ravel()
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need paired, non-empty labels; got {len(x)} and {len(y)}")
    _, x_codes = np.unique(x, return_inverse=True)
    _, y_codes = np.unique(y, return_inverse=True)
    counts = np.zeros((x_codes.max() + 1, y_codes.max() + 1))
    np.add.at(counts, (x_codes, y_codes), 1)
    return counts / len(x)


def _entropy_of(probabilities):
    p = probabilities[probabilities > 0]  # 0 ln 0 = 0
    return float(-np.sum(p * np.log(p)))


def entropy(labels):
    """`H(X) = -sum_b Pr(X=b) ln Pr(X=b)` of the labels (n,), in nats."""
    return _entropy_of(joint_distribution(labels, labels).diagonal())


def mutual_information(x, y):
    """`MI(X; Y)` of paired labels x, y (n,), in nats; symmetric, in [0, min(H(X), H(Y))]."""
    joint = joint_distribution(x, y)
    independent = np.outer(joint.sum(axis=1), joint.sum(axis=0))
    seen = joint > 0  # cells with Pr = 0 contribute 0 (x ln x -> 0)
    # Floating sums can leave -1e-17 where the labels are independent: MI is never negative.
    return max(0.0, float(np.sum(joint[seen] * np.log(joint[seen] / independent[seen]))))
