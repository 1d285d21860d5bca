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
    """‖B1A1 − B2A2‖_F without cancellation: the norm of the core of ``[B1, −B2] @ [A1; A2]``."""
    _, r_b = torch.linalg.qr(torch.cat([B1, -B2], dim=1))
    _, r_a = torch.linalg.qr(torch.cat([A1, A2], dim=0).T)
    return torch.linalg.matrix_norm(r_b @ r_a.T)
