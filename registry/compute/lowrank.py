"""Exact low-rank algebra on factored updates ``ΔW = B @ A`` without forming the d×k matrix.

With ``B`` (d×R) and ``A`` (R×k): ``B = Q_B R_B`` and ``Aᵀ = Q_A R_A`` (thin QR), so
``ΔW = Q_B (R_B R_Aᵀ) Q_Aᵀ`` and the SVD of ΔW is that of the R×R core, rotated back:
O((d+k)·R²) instead of O(d·k·min(d, k)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FactoredSVD:
    """``ΔW = U diag(S) Vh`` with U (d×R), S (R), Vh (R×k), singular values descending."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor


def factored_svd(B: torch.Tensor, A: torch.Tensor) -> FactoredSVD:
    """The thin SVD of ``B @ A`` from QR of the factors and an SVD of the small core (fp32 in, fp32 out)."""
    q_b, r_b = torch.linalg.qr(B)
    q_a, r_a = torch.linalg.qr(A.T)
    u, s, vh = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
    return FactoredSVD(U=q_b @ u, S=s, Vh=vh @ q_a.T)


def truncate(svd: FactoredSVD, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Best rank-``rank`` factors ``(B', A')`` with ``B' = U·S`` and ``A' = Vh`` (PEFT's split of S), and
    the relative Frobenius error ``‖ΔW − B'A'‖ / ‖ΔW‖`` of the truncation."""
    rank = min(rank, svd.S.shape[0])
    total = torch.linalg.vector_norm(svd.S)
    dropped = torch.linalg.vector_norm(svd.S[rank:])
    error = float(dropped / total) if float(total) > 0 else 0.0
    return svd.U[:, :rank] * svd.S[:rank], svd.Vh[:rank, :], error


def frobenius_inner(B1: torch.Tensor, A1: torch.Tensor, B2: torch.Tensor, A2: torch.Tensor) -> torch.Tensor:
    """⟨B1A1, B2A2⟩_F = tr((B1ᵀB2)(A2A1ᵀ)) from r×r Gram matrices, in the factors' own dtype.

    For norms, inner product, cosine and distance of a pair at once (in fp64) use ``pair_statistics`` or
    ``compare``: one stacked Gram pair instead of three of these."""
    return torch.sum((B1.T @ B2) * (A1 @ A2.T))


# Below this squared distance (relative to ‖Δ1‖² + ‖Δ2‖², i.e. a distance under 1e-3 of the norms) the
# trace formula ‖Δ1‖² + ‖Δ2‖² − 2⟨Δ1, Δ2⟩ has lost too many digits to cancellation: use the QR core.
_CANCELLATION = 1e-6


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two factored updates Δ1 = B1A1, Δ2 = B2A2: ``norm1 = ‖Δ1‖_F``, ``norm2 = ‖Δ2‖_F``, ``inner =
    ⟨Δ1, Δ2⟩_F``, ``distance = ‖Δ1 − Δ2‖_F`` and ``cosine = inner / (norm1·norm2)`` clamped to [−1, 1]
    (None when either update is zero)."""

    norm1: float
    norm2: float
    inner: float
    distance: float
    cosine: float | None


def pair_statistics(
    B1: torch.Tensor,
    A1: torch.Tensor,
    B2: torch.Tensor,
    A2: torch.Tensor,
    *,
    scale1: float = 1.0,
    scale2: float = 1.0,
) -> tuple[float, float, float]:
    """``(‖Δ1‖², ‖Δ2‖², ⟨Δ1, Δ2⟩)`` (Frobenius) of ``Δ1 = scale1·B1A1`` and ``Δ2 = scale2·B2A2`` from ONE
    stacked Gram pair in fp64 (the scales applied to the three scalars, never to the factors).

    With ``B = [B1 B2]`` (d×R) and ``A = [A1; A2]`` (R×k), R = r1 + r2: ``G_B = BᵀB`` and ``G_A = AAᵀ``
    (R×R each); ``P = G_B ⊙ G_A`` and the sums of its 2×2 blocks are ``[[‖Δ1‖², ⟨Δ1, Δ2⟩], [⟨Δ2, Δ1⟩,
    ‖Δ2‖²]]``, since ``⟨BᵢAᵢ, BⱼAⱼ⟩ = tr((BᵢᵀBⱼ)(AⱼAᵢᵀ))``. O((d + k)·R²) work in a handful of tensor ops,
    never forming d×k. Exact to fp64 rounding; for the distance of nearly equal updates use ``compare`` or
    ``difference_norm``, which fall back to a QR core where ``‖Δ1‖² + ‖Δ2‖² − 2⟨Δ1, Δ2⟩`` cancels.
    """
    statistics, _, _ = _stacked_statistics(B1, A1, B2, A2, scale1, scale2)
    return statistics


def compare(
    B1: torch.Tensor,
    A1: torch.Tensor,
    B2: torch.Tensor,
    A2: torch.Tensor,
    *,
    scale1: float = 1.0,
    scale2: float = 1.0,
) -> Comparison:
    """Norms, inner product, cosine and distance of ``Δ1 = scale1·B1A1`` and ``Δ2 = scale2·B2A2`` from
    ``pair_statistics``'s single Gram pair; the distance from the trace formula, or, where that cancels
    (distance under 1e-3 of the norms), from the QR core of ``[s1·B1, −s2·B2] @ [A1; A2]``, accurate at any
    distance. Factors may be of any float dtype (all are read exactly into fp64) but on one device."""
    (n1, n2, inner), B, A = _stacked_statistics(B1, A1, B2, A2, scale1, scale2)
    squared = n1 + n2 - 2.0 * inner
    if squared > _CANCELLATION * (n1 + n2):
        distance = math.sqrt(squared)
    elif n1 + n2 == 0.0:  # both updates are zero
        distance = 0.0
    else:  # cancellation (or NaN, which the QR core propagates)
        distance = _core_distance(B, A, B1.shape[1], scale1, scale2)
    norm1, norm2 = math.sqrt(max(n1, 0.0)), math.sqrt(max(n2, 0.0))
    cosine = max(-1.0, min(1.0, inner / (norm1 * norm2))) if norm1 > 0 and norm2 > 0 else None
    return Comparison(norm1=norm1, norm2=norm2, inner=inner, distance=distance, cosine=cosine)


def difference_norm(B1: torch.Tensor, A1: torch.Tensor, B2: torch.Tensor, A2: torch.Tensor) -> torch.Tensor:
    """‖B1A1 − B2A2‖_F without forming either product, as a 0-d tensor of ``B1``'s dtype and device.

    ``‖Δ1‖² + ‖Δ2‖² − 2⟨Δ1, Δ2⟩`` from ``pair_statistics`` (one fp64 Gram pair) is cheap, but cancels
    catastrophically when the two updates are nearly equal; there (distance under 1e-3 of the norms) the
    norm of the small core of ``[B1, −B2] @ [A1; A2]`` (thin QR of each stacked factor) is used instead.
    """
    return torch.tensor(compare(B1, A1, B2, A2).distance, dtype=B1.dtype, device=B1.device)


def _stacked_statistics(
    B1: torch.Tensor,
    A1: torch.Tensor,
    B2: torch.Tensor,
    A2: torch.Tensor,
    scale1: float,
    scale2: float,
) -> tuple[tuple[float, float, float], torch.Tensor, torch.Tensor]:
    """``pair_statistics`` and the stacked fp64 factors ``[B1 B2]``, ``[A1; A2]`` (unscaled, fresh tensors)
    it used."""
    r1, r2 = B1.shape[1], B2.shape[1]
    if A1.shape[0] != r1 or A2.shape[0] != r2 or B1.shape[0] != B2.shape[0] or A1.shape[1] != A2.shape[1]:
        raise ValueError(
            f"factors do not pair up: B1 {tuple(B1.shape)}, A1 {tuple(A1.shape)}, "
            f"B2 {tuple(B2.shape)}, A2 {tuple(A2.shape)}"
        )
    # cat first, cast once: one fp64 copy of each stacked factor (a no-op cast when already fp64)
    B = torch.cat([B1, B2], dim=1).to(torch.float64)
    A = torch.cat([A1, A2], dim=0).to(torch.float64)
    P = torch.mm(B.T, B).mul_(torch.mm(A, A.T))
    if r1 == r2:
        (n1, inner12), (inner21, n2) = P.view(2, r1, 2, r1).sum(dim=(1, 3)).tolist()
    else:
        n1, n2, inner12, inner21 = torch.stack(
            [P[:r1, :r1].sum(), P[r1:, r1:].sum(), P[:r1, r1:].sum(), P[r1:, :r1].sum()]
        ).tolist()
    inner = 0.5 * (inner12 + inner21) * (scale1 * scale2)
    return (n1 * (scale1 * scale1), n2 * (scale2 * scale2), inner), B, A


def _core_distance(B: torch.Tensor, A: torch.Tensor, r1: int, scale1: float, scale2: float) -> float:
    """‖s1·B1A1 − s2·B2A2‖ from the stacked fp64 ``B = [B1 B2]`` (scaled in place to ``[s1·B1, −s2·B2]``)
    and ``A = [A1; A2]``: ``‖R_B R_Aᵀ‖`` with R the triangular factors of thin QRs of ``B`` and ``Aᵀ``."""
    B[:, :r1].mul_(scale1)
    B[:, r1:].mul_(-scale2)
    r_b = torch.linalg.qr(B, mode="r").R
    r_a = torch.linalg.qr(A.T, mode="r").R
    return float(torch.linalg.matrix_norm(r_b @ r_a.T))
