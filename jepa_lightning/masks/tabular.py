"""T-JEPA feature masks: a context subset and several target subsets of a row's F features, batched.

Sampling rule (T-JEPA, Thimonier et al. 2025; reference `src/mask.py`), per call (one batch):

1. Sizes, shared by the whole batch so the index tensors are rectangular: the context size is drawn
   uniformly among the integers in ``[round(F c_lo), round(F c_hi)]`` (at least ``min_context``), then the
   target size among ``[round(F t_lo), round(F t_hi)]`` (at least 1). Without overlap the target range is
   capped at ``F - n_context`` so that the targets fit in the features the context left out.
2. Per sample: a uniformly random context subset (first ``n_context`` entries of a random permutation).
3. Per sample and target (``num_targets`` of them): a uniformly random subset of the features NOT in the
   context (``allow_overlap=False``, the reference's behaviour: its collator always samples targets from the
   complement of the context), or of all features (``allow_overlap=True``). Targets of one sample are drawn
   independently, so they may overlap each other (as in the reference).

Differences from the reference: sizes come from one bounded draw instead of a rejection loop (which resampled
both sizes until they fit); ``allow_overlap`` is honoured (the reference accepts it but ignores it); the
indices are sorted ascending; everything is vectorized torch on the batch's device (permutations are argsorts
of uniform keys from the given generator).
"""

from __future__ import annotations

import torch

from .utils import Masks

__all__ = ["FeatureMask"]


def _share(name: str, value: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi) of fractions, got {value!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"{name} must satisfy 0 <= lo <= hi <= 1, got {(lo, hi)}")
    return lo, hi


class FeatureMask:
    """T-JEPA context/target feature masks (see the module docstring for the rule).

    Args:
        context_share: (lo, hi) fraction of the F features in the context.
        target_share: (lo, hi) fraction of the F features in each target.
        num_targets: target subsets per sample (the reference's ``num_preds``, 4 in the paper).
        allow_overlap: False: targets are drawn from the features outside the context; True: from all.
        min_context: least number of context features.

    Calling it with ``(batch_size, num_features, generator)`` returns :class:`Masks` with ``context``
    [B, Kc] and ``targets`` [B, T, Kt] feature indices in ``[0, F)``, each row sorted ascending.
    """

    def __init__(self, context_share: tuple[float, float] = (0.2, 0.4),
                 target_share: tuple[float, float] = (0.2, 0.4), num_targets: int = 4,
                 allow_overlap: bool = False, min_context: int = 1) -> None:
        self.context_share = _share("context_share", context_share)
        self.target_share = _share("target_share", target_share)
        if num_targets < 1:
            raise ValueError(f"num_targets must be >= 1, got {num_targets}")
        if min_context < 1:
            raise ValueError(f"min_context must be >= 1, got {min_context}")
        self.num_targets, self.allow_overlap, self.min_context = int(num_targets), bool(allow_overlap), int(min_context)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(context_share={self.context_share}, target_share={self.target_share}, "
                f"num_targets={self.num_targets}, allow_overlap={self.allow_overlap}, "
                f"min_context={self.min_context})")

    def size_ranges(self, num_features: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The (min, max) context size and the (min, max) target size for F features (the target maximum before
        the cap F - n_context); a clear error when they cannot be met."""
        f = int(num_features)
        c_lo = max(round(f * self.context_share[0]), self.min_context)
        c_hi = max(round(f * self.context_share[1]), c_lo)
        t_lo = max(round(f * self.target_share[0]), 1)
        t_hi = max(round(f * self.target_share[1]), t_lo)
        room = f if self.allow_overlap else f - t_lo  # the most context features that leave a target room
        if c_lo > min(room, f):
            raise ValueError(
                f"FeatureMask: {f} features cannot hold a context of {c_lo} (context_share={self.context_share}, "
                f"min_context={self.min_context})" + ("" if self.allow_overlap else
                                                      f" and a disjoint target of {t_lo} (target_share="
                                                      f"{self.target_share})")
                + "; lower the shares or min_context, or set allow_overlap=true")
        return (c_lo, min(c_hi, room)), (t_lo, t_hi)

    def __call__(self, batch_size: int, num_features: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Masks:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        f, b, t = int(num_features), int(batch_size), self.num_targets
        (c_lo, c_hi), (t_lo, t_hi) = self.size_ranges(f)
        dev = generator.device if generator is not None else torch.device(device or "cpu")
        g = generator
        n_ctx = int(torch.randint(c_lo, c_hi + 1, (1,), generator=g, device=dev))
        pool = f if self.allow_overlap else f - n_ctx
        n_tgt = int(torch.randint(t_lo, min(t_hi, pool) + 1, (1,), generator=g, device=dev))

        perm = torch.rand(b, f, generator=g, device=dev).argsort(dim=1)             # [B, F]
        context = perm[:, :n_ctx].sort(dim=1).values                                 # [B, Kc]
        candidates = perm if self.allow_overlap else perm[:, n_ctx:]                 # [B, pool]
        pick = torch.rand(b, t, pool, generator=g, device=dev).argsort(dim=2)[..., :n_tgt]  # [B, T, Kt]
        targets = candidates.unsqueeze(1).expand(-1, t, -1).gather(2, pick).sort(dim=2).values
        return Masks(context=context, targets=targets)
