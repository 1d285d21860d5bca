"""Exact low-rank algebra on factored updates ``ΔW = B @ A`` without forming the d×k matrix.

With ``B`` (d×R) and ``A`` (R×k): ``B = Q_B R_B`` and ``Aᵀ = Q_A R_A`` (thin QR), so
``ΔW = Q_B (R_B R_Aᵀ) Q_Aᵀ`` and the SVD of ΔW is that of the R×R core, rotated back:
O((d+k)·R²) instead of O(d·k·min(d, k)).
"""

from __future__ import annotations

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
    """⟨B1A1, B2A2⟩_F = tr((B1ᵀB2)(A2A1ᵀ)) from r×r Gram matrices."""
    return torch.sum((B1.T @ B2) * (A1 @ A2.T))


def difference_norm(B1: torch.Tensor, A1: torch.Tensor, B2: torch.Tensor, A2: torch.Tensor) -> torch.Tensor:
    """‖B1A1 − B2A2‖_F without forming either product.

    ``‖Δ1‖² + ‖Δ2‖² − 2⟨Δ1, Δ2⟩`` from fp64 Gram matrices is cheap, but cancels catastrophically when the
    two updates are nearly equal; there (distance under 1e-3 of the norms) the norm of the small core of
    ``[B1, −B2] @ [A1; A2]`` (thin QR of each stacked factor) is used instead, accurate at any distance.
    """
    b1, a1, b2, a2 = (t.double() for t in (B1, A1, B2, A2))
    n1, n2 = frobenius_inner(b1, a1, b1, a1), frobenius_inner(b2, a2, b2, a2)
    squared = n1 + n2 - 2 * frobenius_inner(b1, a1, b2, a2)
    if squared > 1e-6 * (n1 + n2):
        return squared.sqrt().to(B1.dtype)
    _, r_b = torch.linalg.qr(torch.cat([b1, -b2], dim=1))
    _, r_a = torch.linalg.qr(torch.cat([a1, a2], dim=0).T)
    return torch.linalg.matrix_norm(r_b @ r_a.T).to(B1.dtype)
