"""Retention configurations: how many word vectors each encoder layer keeps (pure Python/NumPy).

Rules (METHOD.md "Where elimination happens"): one count per layer, each `1 <= l_j <= N`, and the
counts never increase with depth.

Derivation from a configuration search (`RetentionConfig.from_masses`): the paper describes the
*rounded-up* mass, so `l_j = ceil(mass(r_j) - 1e-6)` (the tolerance keeps a mass of 20.0000001,
float noise on an integer, at 20), then `max(l_j, 1)`, then `min(l_j, N)`, then
`l_j = min(l_j, l_{j-1})` from the first layer down. The reference implementation truncates
(`int(mass)`); pass `rounding="floor"` to reproduce it.

Two modes (README "Length-relative retention"):
- fixed (the paper): layer j keeps `l_j` word vectors of every input, padded to N.
- relative: `rho_j = l_j / N` is a fraction of each input's own real tokens: input i with `n_i`
  real tokens keeps `ceil(rho_j * n_i) = ceil(l_j * n_i / N)` in layer j (`per_input_counts`).
  Short inputs then lose as large a share as long ones, and a batch needs no padding to N. The
  counts are integer arithmetic, so a batch and a single input agree exactly on them; since
  `1 <= l_j <= N` every input keeps between 1 and n_i, and the counts never increase with depth.
"""

import dataclasses
import math
from typing import Sequence

_ROUNDING = {
    "ceil": lambda m: math.ceil(m - 1e-6),
    "floor": lambda m: math.floor(m + 1e-6),
    "round": lambda m: int(math.floor(m + 0.5)),
}


class RetentionError(ValueError):
    """A retention configuration that breaks the rules."""


def _as_int(value, what):
    try:
        whole = int(value)
    except (TypeError, ValueError):
        whole = None
    if whole is None or isinstance(value, bool) or whole != value:
        raise RetentionError(f"{what} must be a whole number, got {value!r}")
    return whole


@dataclasses.dataclass(frozen=True)
class RetentionConfig:
    """Word vectors kept per encoder layer, `lengths[j]` for layer j+1, for inputs of length N.

    Attributes:
        lengths: one positive int per encoder layer, non-increasing.
        sequence_length: N, the input length the configuration was found for.
        relative: False: layer j keeps `lengths[j]` of any input (the paper). True: it keeps the
            fraction `lengths[j] / N` of each input's real tokens (`per_input_counts`).
    """

    lengths: tuple
    sequence_length: int
    relative: bool = False

    def __post_init__(self):
        lengths = tuple(_as_int(v, "retention length") for v in self.lengths)
        object.__setattr__(self, "lengths", lengths)
        n = _as_int(self.sequence_length, "sequence_length")
        object.__setattr__(self, "sequence_length", n)
        if not isinstance(self.relative, bool):
            raise RetentionError(f"relative must be True or False, got {self.relative!r}")
        if not lengths:
            raise RetentionError("a retention configuration needs at least one layer")
        for j, value in enumerate(lengths, start=1):
            if not 1 <= value <= n:
                raise RetentionError(
                    f"layer {j} keeps {value} word vectors; each layer must keep between 1 and "
                    f"N={n} (got {list(lengths)})")
        for j in range(1, len(lengths)):
            if lengths[j] > lengths[j - 1]:
                raise RetentionError(
                    f"retention must not increase with depth: layer {j + 1} keeps {lengths[j]} > "
                    f"layer {j} keeps {lengths[j - 1]} (got {list(lengths)})")

    @property
    def num_layers(self):
        return len(self.lengths)

    def check_num_layers(self, num_layers):
        """Raise `RetentionError` unless there is one count per encoder layer."""
        check_num_layers(self.lengths, num_layers)

    @property
    def ratios(self):
        """`rho_j = l_j / N`, the fraction of the input each layer keeps (exact in relative mode)."""
        return tuple(length / self.sequence_length for length in self.lengths)

    @property
    def flop_ratio(self):
        """`L * N / sum(l_j)`: the encoder-layer work saved, ignoring the attention's T^2 term.

        In relative mode this is `L / sum(rho_j)`, the same for inputs of every length (up to the
        rounding up of each count)."""
        return self.num_layers * self.sequence_length / sum(self.lengths)

    @classmethod
    def full(cls, num_layers, sequence_length):
        """No elimination: every layer keeps all N word vectors."""
        return cls((sequence_length,) * num_layers, sequence_length)

    @classmethod
    def from_masses(cls, masses: Sequence[float], sequence_length, rounding="ceil", relative=False):
        """Derive a configuration from soft-extract masses with the rule in the module docstring.

        In relative mode the mass is measured in the same N units (`SoftExtract(relative=True)`
        spreads each input's ranks over the N retention weights), so the rule is the same."""
        if rounding not in _ROUNDING:
            raise RetentionError(f"unknown rounding {rounding!r}; use one of {sorted(_ROUNDING)}")
        lengths, previous = [], sequence_length
        for mass in masses:
            value = min(max(_ROUNDING[rounding](float(mass)), 1), sequence_length, previous)
            lengths.append(value)
            previous = value
        return cls(tuple(lengths), sequence_length, relative)

    def scaled_lengths(self, input_length):
        """Length-aware retention: `ceil(l_j * T / N)` word vectors for inputs of length T.

        The paper's configuration is absolute (l_j of N), so a batch padded only to T < N would
        keep padding in the first layers; scaling keeps the same fraction `rho_j = l_j / N` of
        whatever length arrives. Integer arithmetic (no float rounding); `T = N` gives `lengths`.
        `input_length` may be a Python int or a scalar int tensor (then tensors are returned).
        """
        n = self.sequence_length
        return [(length * input_length + n - 1) // n for length in self.lengths]

    def per_input_counts(self, real_tokens):
        """Relative mode: word vectors each input keeps in each layer, `ceil(l_j * n_i / N)`.

        Args:
            real_tokens: `n_i`, a Python int or an int tensor (B,) of real-token counts, each
                between 1 and N.

        Returns:
            One entry per layer, each of `real_tokens`' type and shape.
        """
        return self.scaled_lengths(real_tokens)

    def to_dict(self):
        data = {"lengths": list(self.lengths), "sequence_length": self.sequence_length,
                "flop_ratio": round(self.flop_ratio, 4)}
        if self.relative:
            data.update(relative=True, ratios=[round(r, 4) for r in self.ratios])
        return data

    @classmethod
    def from_dict(cls, data):
        try:
            return cls(tuple(data["lengths"]), data["sequence_length"], data.get("relative", False))
        except (KeyError, TypeError, AttributeError) as err:
            raise RetentionError(
                f"a retention configuration needs 'lengths' (list of ints) and 'sequence_length' "
                f"(int), and optionally 'relative' (bool); got {data!r}") from err


def check_num_layers(lengths, num_layers):
    """Raise `RetentionError` unless `lengths` (any sequence of counts) has one per encoder layer."""
    if len(lengths) != num_layers:
        raise RetentionError(
            f"retention configuration has {len(lengths)} entries {list(lengths)} but the encoder has "
            f"{num_layers} layers")


def mass_penalty(masses, lam):
    """The search regularizer `lam * sum_j j * mass(r_j)`, layers numbered from 1.

    Works on Python floats or scalar tensors (the training loop passes tensors).
    """
    return lam * sum(j * mass for j, mass in enumerate(masses, start=1))
