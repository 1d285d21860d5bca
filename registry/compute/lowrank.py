"""Exact low-rank algebra on factored updates ``ΔW = B @ A`` without forming the d×k matrix, and the
truncated SVD of the dense matrices the element-wise merges produce.

With ``B`` (d×R) and ``A`` (R×k): ``B = Q_B R_B`` and ``Aᵀ = Q_A R_A`` (orthonormal Q, R×R core factors,
from the fp64 Gram matrices or thin QR), so ``ΔW = Q_B (R_B R_Aᵀ) Q_Aᵀ`` and the SVD of ΔW is that of the
R×R core, rotated back: O((d+k)·R²) instead of O(d·k·min(d, k)).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: for work of a few milliseconds or less (r×r LAPACK calls,
    the Gram matrices of factors). Each op over more than 32k entries is split across the OpenMP threads,
    which wait for each other at its end; on a shared CPU one of them is often descheduled, and then an op
    of 0.3 ms takes 5-300 ms (measured on a shared 2-core VM). One thread never waits.
    (torch's thread count is per process: other threads running torch meanwhile get one thread too.)"""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


_GRAM_CONDITION = 1e4  # factored_svd's Gram route where both factors' condition numbers are below this


@dataclass(frozen=True)
class FactoredSVD:
    """``ΔW = U diag(S) Vh`` with U (d×R), S (R), Vh (R×k), singular values descending."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor


def factored_svd(B: torch.Tensor, A: torch.Tensor, rank: int | None = None) -> FactoredSVD:
    """The thin SVD of ``B @ A`` (B d×R, A R×k) without forming it: every singular value, and the leading
    ``rank`` singular vectors (all R if None), in the factors' dtype.

    Where both factors are well conditioned (κ ≤ 1e4, the usual case: each adapter's factors have full rank
    r), through the R×R Gram matrices in fp64: ``BᵀB = V_B Λ_B V_Bᵀ`` makes ``B = Q_B·Λ_B^½V_Bᵀ`` with
    ``Q_B = B·V_B·Λ_B^-½`` orthonormal to ~κ²·1e-16, likewise ``A``; the SVD of the core ``Λ_B^½V_BᵀV_AΛ_A^½``
    rotated back is ΔW's. Two GEMMs and one small SVD instead of two Householder QRs, which run at BLAS-2
    speed. Otherwise (rank-deficient or nearly so, e.g. nearly cancelling inputs) through thin QRs of the
    factors, accurate at any condition."""
    with one_thread():  # a few ms of work: see one_thread
        gram = _gram_factored_svd(B, A, rank)
        if gram is not None:
            return gram
        q_b, r_b = torch.linalg.qr(B)
        q_a, r_a = torch.linalg.qr(A.T)
        u, s, vh = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
        keep = s.shape[0] if rank is None else min(rank, s.shape[0])
        return FactoredSVD(U=q_b @ u[:, :keep], S=s, Vh=vh[:keep] @ q_a.T)


def _gram_factored_svd(B: torch.Tensor, A: torch.Tensor, rank: int | None) -> FactoredSVD | None:
    """``factored_svd`` through fp64 Gram matrices, or None where a factor's condition number exceeds
    ``_GRAM_CONDITION`` (then the Gram route would lose digits)."""
    R = B.shape[1]
    if R == 0 or B.shape[0] < R or A.shape[1] < R:
        return None
    Bt = B.T  # (R, d) row-major, copied so if needed: BᵀB from rows runs ~2× faster than from columns
    if Bt.dtype != torch.float64 or not Bt.is_contiguous():
        Bt = torch.empty(R, B.shape[0], dtype=torch.float64, device=B.device).copy_(B.T)
    A64 = A.to(torch.float64).contiguous()
    eig_b, vec_b = torch.linalg.eigh(Bt @ Bt.T)  # ascending
    eig_a, vec_a = torch.linalg.eigh(A64 @ A64.T)
    if not all(bool(eig[0] > eig[-1] * _GRAM_CONDITION**-2) for eig in (eig_b, eig_a)):
        return None
    root_b, root_a = eig_b.sqrt(), eig_a.sqrt()
    core = (vec_b.T * root_b[:, None]) @ (vec_a * root_a)
    u, s, vh = torch.linalg.svd(core, full_matrices=False)
    keep = R if rank is None else min(rank, R)
    U = Bt.T @ ((vec_b / root_b) @ u[:, :keep])  # Q_B·u
    Vh = (vh[:keep] @ (vec_a / root_a).T) @ A64  # vh·Q_Aᵀ
    dtype = B.dtype
    return FactoredSVD(U=U.to(dtype), S=s.to(dtype), Vh=Vh.to(dtype))


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
    """``pair_statistics`` and the stacked fp64 factors ``[B1 B2]`` (column-major), ``[A1; A2]`` (unscaled,
    fresh tensors) it used."""
    r1, r2 = B1.shape[1], B2.shape[1]
    if A1.shape[0] != r1 or A2.shape[0] != r2 or B1.shape[0] != B2.shape[0] or A1.shape[1] != A2.shape[1]:
        raise ValueError(
            f"factors do not pair up: B1 {tuple(B1.shape)}, A1 {tuple(A1.shape)}, "
            f"B2 {tuple(B2.shape)}, A2 {tuple(A2.shape)}"
        )
    # each factor copied (and cast) once into its place in a stacked fp64 one; B stacked as Bᵀ (R×d,
    # row-major): BᵀB from rows runs ~2× faster than from the columns of a row-major B
    Bt = torch.empty(r1 + r2, B1.shape[0], dtype=torch.float64, device=B1.device)
    Bt[:r1].copy_(B1.T)
    Bt[r1:].copy_(B2.T)
    A = torch.empty(r1 + r2, A1.shape[1], dtype=torch.float64, device=A1.device)
    A[:r1].copy_(A1)
    A[r1:].copy_(A2)
    P = torch.mm(Bt, Bt.T).mul_(torch.mm(A, A.T))
    if r1 == r2:
        (n1, inner12), (inner21, n2) = P.view(2, r1, 2, r1).sum(dim=(1, 3)).tolist()
    else:
        n1, n2, inner12, inner21 = torch.stack(
            [P[:r1, :r1].sum(), P[r1:, r1:].sum(), P[:r1, r1:].sum(), P[r1:, :r1].sum()]
        ).tolist()
    inner = 0.5 * (inner12 + inner21) * (scale1 * scale2)
    return (n1 * (scale1 * scale1), n2 * (scale2 * scale2), inner), Bt.T, A


def _core_distance(B: torch.Tensor, A: torch.Tensor, r1: int, scale1: float, scale2: float) -> float:
    """‖s1·B1A1 − s2·B2A2‖ from the stacked fp64 ``B = [B1 B2]`` (scaled in place to ``[s1·B1, −s2·B2]``)
    and ``A = [A1; A2]``: ``‖R_B R_Aᵀ‖`` with R the triangular factors of thin QRs of ``B`` and ``Aᵀ``."""
    B[:, :r1].mul_(scale1)
    B[:, r1:].mul_(-scale2)
    r_b = torch.linalg.qr(B, mode="r").R
    r_a = torch.linalg.qr(A.T, mode="r").R
    return float(torch.linalg.matrix_norm(r_b @ r_a.T))


# Truncated SVD of a dense matrix (the element-wise merges) ---------------------------------------------

_GRAM_CHUNK = 4096  # columns of a dense matrix cast to fp64 at a time
_OVERSAMPLE = 16  # extra sketch columns beyond 2·rank
_POWER_ITERATIONS = (2, 16)  # at least, at most
_CONVERGED = 1e-7  # stop iterating when no leading Ritz value moves by more than this share of the largest
_RESIDUAL_ROWS = 512  # rows of the residual formed at a time to measure the error


@dataclass(frozen=True)
class Truncation:
    """Factors ``B`` (m×r) = U·S and ``A`` (r×n) = Vh of a dense M's rank-r truncation, their relative
    Frobenius error ``‖M − BA‖/‖M‖``, the solver (``exact`` or ``randomized``) and its power iterations."""

    B: torch.Tensor
    A: torch.Tensor
    error: float
    solver: str
    iterations: int = 0


def truncated_svd(M: torch.Tensor, rank: int, *, seed: int = 0) -> Truncation:
    """The best rank-``rank`` factors of a dense fp32 ``M``.

    Exact (``leading_svd``) where M is small next to the sketch (its smaller side under 4·(2·rank + 16));
    otherwise randomized subspace iteration (Halko, Martinsson & Tropp 2011, alg. 4.4) with a sketch of
    2·rank + 16 columns drawn from ``seed`` (deterministic), re-orthonormalised at every step, iterated until
    the leading ``rank`` Ritz values stop moving (by 1e-7 of the largest; at least 2, at most 16
    iterations): the subspace has then converged too, so the result is the exact truncation's to ~1e-5 and
    its Frobenius error the optimum's to ~1e-8 on the heavy-tailed spectra of TIES/DARE merges
    (tests/compute/test_lowrank.py, bench/merge.py). Its GEMMs are 2·(iterations + 1) products of M with
    a thin matrix, against the exact route's M·Mᵀ. The error returned is measured, ‖M − BA‖ over row
    blocks, not estimated."""
    small = min(M.shape)
    width = min(small, 2 * rank + _OVERSAMPLE)
    if 4 * width > small:
        B, A, error = leading_svd(M, rank)
        return Truncation(B, A, error, "exact")
    return _randomized_svd(M, rank, width, seed)


def leading_svd(M: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The best rank-``rank`` factors ``(U·S, Vᵀ)`` of a dense ``M`` and their relative error, from the
    eigenvectors of the smaller Gram matrix formed in fp64 (in column chunks, so only one fp64 chunk is
    alive): the leading triplets come out accurate to fp32, as LAPACK's SVD gives them, 2-4× faster on a
    CPU and without cuSOLVER's slow SVD. ``S`` is taken as the norms of ``Uᵀ·M``'s rows, so the factors'
    product is exactly the projection of ``M`` on the leading singular vectors."""
    wide = M.shape[0] <= M.shape[1]
    X = M if wide else M.T  # X (small × large); its left singular vectors first
    small, large = X.shape
    gram = torch.zeros(small, small, dtype=torch.float64, device=M.device)
    for start in range(0, large, _GRAM_CHUNK):
        chunk = X[:, start : start + _GRAM_CHUNK].double()
        gram.addmm_(chunk, chunk.T)
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)  # ascending
    del gram
    eigenvalues = eigenvalues.flip(0).clamp_(min=0)
    keep = min(rank, small)
    U = eigenvectors[:, -keep:].flip(1) if keep else eigenvectors[:, :0]
    total = float(eigenvalues.sum())
    error = math.sqrt(float(eigenvalues[keep:].sum()) / total) if total > 0 else 0.0
    projected = torch.empty(keep, large, dtype=torch.float64, device=M.device)
    for start in range(0, large, _GRAM_CHUNK):
        projected[:, start : start + _GRAM_CHUNK] = U.T @ X[:, start : start + _GRAM_CHUNK].double()
    return (*_split(U, projected, wide), error)


def _split(U: torch.Tensor, projected: torch.Tensor, wide: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A) in M's orientation from orthonormal ``U`` (small × r) and ``projected = Uᵀ·X`` (r × large):
    S is the norms of ``projected``'s rows, whose normalised rows are X's right singular vectors."""
    sigma = torch.linalg.vector_norm(projected, dim=1)
    unit = projected / torch.where(sigma > 0, sigma, 1)[:, None]
    if wide:  # M = X = U·S·unit
        return (U * sigma).float(), unit.float()
    return (unit.T * sigma).float(), U.T.float().contiguous()  # M = Xᵀ = unitᵀ·S·Uᵀ


def _randomized_svd(M: torch.Tensor, rank: int, width: int, seed: int) -> Truncation:
    """Subspace iteration on M itself (either orientation costs the same GEMMs): Q (m×w) spans the sketch
    ``M·Ω``, then alternately ``Z = orth(MᵀQ)`` and ``Q = orth(M·Z)``; the Ritz values of Q, the eigenvalues
    of ``(MᵀQ)ᵀ(MᵀQ)``, tell when it has settled. A rank-deficient M (rank < w) loses sketch columns in
    ``_orthonormal``, and the factors returned may then have fewer than ``rank`` columns."""
    generator = torch.Generator(device=M.device).manual_seed(seed)
    sketch = torch.randn(M.shape[1], width, generator=generator, device=M.device, dtype=M.dtype)
    total = squared_norm(M)
    if total == 0:
        return Truncation(M.new_zeros(M.shape[0], rank), M.new_zeros(rank, M.shape[1]), 0.0, "randomized")
    low, high = _POWER_ITERATIONS
    Q = _orthonormal(M @ sketch)  # the products with M on every thread, the rest on one
    ritz, iterations = None, 0
    while True:
        Z = M.T @ Q  # (QᵀM)ᵀ
        with one_thread():
            Z = Z.double()
            values, vectors = torch.linalg.eigh(Z.T @ Z)  # ascending: the squared singular values of QᵀM
            top = values[-rank:].clamp(min=0)
            moved = ritz is None or ritz.shape != top.shape
            change = math.inf if moved else float((top - ritz).abs().max() / top[-1].clamp(min=1e-300))
        if iterations >= high or (iterations >= low and change <= _CONVERGED):
            break
        ritz = top
        Q = _orthonormal(M @ _orthonormal(Z))
        iterations += 1
    with one_thread():
        u = vectors[:, -rank:].flip(1)  # Q·u: the leading left singular vectors found
        B, A = _split(Q.double() @ u, (Z @ u).T, True)  # (Z·u)ᵀ = uᵀQᵀM
    return Truncation(B, A, math.sqrt(squared_residual(M, B, A) / total), "randomized", iterations)


def _orthonormal(Y: torch.Tensor) -> torch.Tensor:
    """An fp32 orthonormal basis of Y's columns, dropping directions under 1e-6 of the largest: ``Y ←
    Y·V·Λ^-½`` from the fp64 Gram ``YᵀY = VΛVᵀ`` (CholeskyQR with eigenvectors, so a rank-deficient Y
    loses columns instead of failing), repeated once where Y was ill-conditioned (its result is then
    orthonormal only to κ²·1e-16). Small GEMMs, where Householder QR of a tall matrix runs at BLAS-2
    speed."""
    with one_thread():
        Y64 = Y.double()
        for _ in range(2):
            values, vectors = torch.linalg.eigh(Y64.T @ Y64)  # ascending
            keep = values > values[-1] * 1e-12
            Y64 = Y64 @ (vectors[:, keep] / values[keep].sqrt())
            if bool(values[0] > values[-1] * 1e-8):  # κ(Y) < 1e4: orthonormal to 1e-8 already
                break
        return Y64.float()


def squared_norm(M: torch.Tensor) -> float:
    """‖M‖² from row norms (fp32, ~1e-7 exact) summed in fp64: a whole fp32 norm over millions of entries
    is ~1e-4 off, a whole fp64 one a copy of M."""
    rows = torch.linalg.vector_norm(M, dim=1).double()
    return float(rows.square().sum())


def squared_residual(M: torch.Tensor, B: torch.Tensor, A: torch.Tensor) -> float:
    """‖M − B·A‖² (Frobenius) accumulated in fp64, a block of rows at a time (one block of scratch)."""
    block = torch.empty(min(_RESIDUAL_ROWS, M.shape[0]), M.shape[1], dtype=M.dtype, device=M.device)
    squared = 0.0
    for start in range(0, M.shape[0], _RESIDUAL_ROWS):
        rows = slice(start, start + _RESIDUAL_ROWS)
        out = block[: M[rows].shape[0]]
        torch.addmm(M[rows], B[rows], A, alpha=-1, out=out)
        squared += squared_norm(out)
    return squared
