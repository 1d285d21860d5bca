"""lowrank.pair_statistics / compare / difference_norm against dense fp64 ΔW, including nearly equal updates
where the trace formula ‖Δ1‖² + ‖Δ2‖² − 2⟨Δ1, Δ2⟩ cancels and the QR core has to take over; factored_svd
(Gram cores or QR) and truncated_svd (exact or randomized) against LAPACK's SVD in fp64."""

from __future__ import annotations

import math

import pytest
import torch

from registry.compute.lowrank import (
    _gram_factored_svd,
    compare,
    difference_norm,
    factored_svd,
    frobenius_inner,
    pair_statistics,
    truncate,
    truncated_svd,
)

D, K = 96, 80  # ΔW is D×K


def factors(rank: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    B = torch.randn(D, rank, generator=generator, dtype=torch.float64) * 0.05
    A = torch.randn(rank, K, generator=generator, dtype=torch.float64) / K**0.5
    return B.to(dtype), A.to(dtype)


def noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def dense(B: torch.Tensor, A: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return (B.double() @ A.double()) * scale


@pytest.mark.parametrize(("r1", "r2"), [(8, 8), (4, 12), (16, 1), (3, 7)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pair_statistics_match_dense_fp64(r1, r2, dtype):
    B1, A1 = factors(r1, seed=r1, dtype=dtype)
    B2, A2 = factors(r2, seed=100 + r2, dtype=dtype)
    W1, W2 = dense(B1, A1), dense(B2, A2)

    n1, n2, inner = pair_statistics(B1, A1, B2, A2)

    assert n1 == pytest.approx(float((W1 * W1).sum()), rel=1e-12)
    assert n2 == pytest.approx(float((W2 * W2).sum()), rel=1e-12)
    scale = math.sqrt(n1 * n2)  # random updates are nearly orthogonal: compare ⟨Δ1, Δ2⟩ to the norms
    assert abs(inner - float((W1 * W2).sum())) <= 1e-12 * scale
    assert isinstance(n1, float) and isinstance(inner, float)

    c = compare(B1, A1, B2, A2)
    exact = float(torch.linalg.matrix_norm(W1 - W2))
    assert (c.norm1, c.norm2) == (pytest.approx(math.sqrt(n1)), pytest.approx(math.sqrt(n2)))
    assert c.distance == pytest.approx(exact, rel=1e-12)
    assert c.cosine == pytest.approx(float((W1 * W2).sum()) / (c.norm1 * c.norm2), abs=1e-12)
    assert float(difference_norm(B1, A1, B2, A2)) == pytest.approx(
        exact, rel=1e-6 if dtype != torch.float64 else 1e-12
    )


def test_pair_statistics_of_a_pair_with_itself_and_of_correlated_updates():
    B, A = factors(6, seed=1)
    n1, n2, inner = pair_statistics(B, A, B, A)
    assert n1 == n2 == pytest.approx(inner, rel=1e-14)
    # Δ2 = −½·Δ1 + a small independent part: a large negative inner product
    Bo, Ao = factors(2, seed=2)
    B2, A2 = torch.cat([-0.5 * B, 0.1 * Bo], dim=1), torch.cat([A, Ao], dim=0)
    W1, W2 = dense(B, A), dense(B2, A2)
    c = compare(B, A, B2, A2)
    assert c.inner == pytest.approx(float((W1 * W2).sum()), rel=1e-12)
    assert c.cosine == pytest.approx(float((W1 * W2).sum() / (W1.norm() * W2.norm())), abs=1e-12)
    assert c.cosine < -0.9
    assert c.distance == pytest.approx(float((W1 - W2).norm()), rel=1e-12)


def test_scales_apply_to_the_updates_not_the_factors():
    B1, A1 = factors(5, seed=3)
    B2, A2 = factors(7, seed=4)
    s1, s2 = 2.5, -0.75
    W1, W2 = dense(B1, A1, s1), dense(B2, A2, s2)

    n1, n2, inner = pair_statistics(B1, A1, B2, A2, scale1=s1, scale2=s2)
    assert (n1, n2) == (pytest.approx(float(W1.square().sum())), pytest.approx(float(W2.square().sum())))
    assert inner == pytest.approx(float((W1 * W2).sum()), rel=1e-10, abs=1e-14 * math.sqrt(n1 * n2))
    c = compare(B1, A1, B2, A2, scale1=s1, scale2=s2)
    assert c.distance == pytest.approx(float((W1 - W2).norm()), rel=1e-12)
    folded = compare(B1 * s1, A1, B2 * s2, A2)
    assert (c.norm1, c.norm2, c.distance) == (
        pytest.approx(folded.norm1, rel=1e-14),
        pytest.approx(folded.norm2, rel=1e-14),
        pytest.approx(folded.distance, rel=1e-13),
    )


@pytest.mark.parametrize("perturb_a", [False, True])
def test_distance_of_nearly_equal_updates_stays_accurate(perturb_a):
    """B2 = B1 + 1e-7·noise (and A2 = A1 + 1e-7·noise): the distance is ~1e-7 of the norms, its square
    ~1e-14 of theirs, so the fp64 trace formula keeps only a couple of digits; the QR core keeps them all."""
    B1, A1 = factors(16, seed=5)
    dB = 1e-7 * noise(B1.shape, seed=6) * B1.abs().mean()
    dA = (1e-7 * noise(A1.shape, seed=7) * A1.abs().mean()) if perturb_a else torch.zeros_like(A1)
    B2, A2 = B1 + dB, A1 + dA
    # the exact difference from the exact factor differences (B2 − B1 is exact in fp64: Sterbenz):
    # Δ2 − Δ1 = (B2 − B1)·A2 + B1·(A2 − A1)
    exact = float(torch.linalg.matrix_norm((B2 - B1) @ A2 + B1 @ (A2 - A1)))
    n1, n2, inner = pair_statistics(B1, A1, B2, A2)
    assert 0 < exact < 1e-6 * math.sqrt(n1)

    c = compare(B1, A1, B2, A2)
    assert c.distance == pytest.approx(exact, rel=1e-6)
    assert float(difference_norm(B1, A1, B2, A2)) == pytest.approx(exact, rel=1e-6)
    assert c.cosine == pytest.approx(1.0, abs=1e-12)
    # the same with the pair swapped and with scales folded out of the factors
    assert compare(B2, A2, B1, A1).distance == pytest.approx(exact, rel=1e-6)
    scaled = compare(B1 / 4, A1, B2 / 4, A2, scale1=4.0, scale2=4.0)
    assert scaled.distance == pytest.approx(exact, rel=1e-6)
    # and the case really is one where the trace formula fails
    trace = math.sqrt(max(n1 + n2 - 2 * inner, 0.0))
    assert abs(trace - exact) / exact > 1e-4


def test_nearly_equal_with_different_scales_and_ranks():
    """Δ1 = 2·B1A1, Δ2 = 0.5·[4·B1 + ε, 1e-9·b][A1; a]: nearly equal updates with different factor layouts."""
    B1, A1 = factors(8, seed=8)
    B2 = 4 * B1 + 1e-7 * noise(B1.shape, seed=9) * B1.abs().mean()
    extra_b, extra_a = factors(1, seed=10)
    B2x, A2x = torch.cat([B2, 1e-9 * extra_b], dim=1), torch.cat([A1, extra_a], dim=0)
    exact = float(torch.linalg.matrix_norm(0.5 * ((B2 - 4 * B1) @ A1 + 1e-9 * extra_b @ extra_a)))
    c = compare(B1, A1, B2x, A2x, scale1=2.0, scale2=0.5)
    assert exact < 1e-6 * c.norm1
    assert c.distance == pytest.approx(exact, rel=1e-6)


def test_zero_updates():
    B, A = factors(4, seed=11)
    Z, Za = torch.zeros_like(B), torch.zeros_like(A)
    c = compare(B, A, Z, Za)
    assert c.norm2 == 0.0 and c.cosine is None
    assert c.distance == pytest.approx(c.norm1, rel=1e-12)
    both = compare(Z, Za, Z, Za)
    assert (both.norm1, both.norm2, both.distance, both.cosine) == (0.0, 0.0, 0.0, None)
    assert float(difference_norm(Z, Za, Z, Za)) == 0.0


def test_mixed_dtypes_are_read_exactly():
    B1, A1 = factors(4, seed=12, dtype=torch.float32)
    B2, A2 = factors(4, seed=13, dtype=torch.bfloat16)
    W1, W2 = dense(B1, A1), dense(B2, A2)
    c = compare(B1, A1, B2, A2)
    assert c.distance == pytest.approx(float((W1 - W2).norm()), rel=1e-12)
    assert c.inner == pytest.approx(float((W1 * W2).sum()), abs=1e-12 * c.norm1 * c.norm2)


def test_difference_norm_keeps_its_tensor_contract():
    B1, A1 = factors(4, seed=14, dtype=torch.float32)
    B2, A2 = factors(6, seed=15, dtype=torch.float32)
    value = difference_norm(B1, A1, B2, A2)
    assert isinstance(value, torch.Tensor) and value.dtype == torch.float32 and value.ndim == 0
    assert float(frobenius_inner(B1, A1, B1, A1)) == pytest.approx(
        float(dense(B1, A1).square().sum()), rel=1e-5
    )


def test_factors_that_do_not_pair_up_are_rejected():
    B1, A1 = factors(4, seed=16)
    B2, A2 = factors(4, seed=17)
    with pytest.raises(ValueError, match="do not pair up"):
        pair_statistics(B1, A1, B2[:-1], A2)
    with pytest.raises(ValueError, match="do not pair up"):
        compare(B1, A1, B2, A2[:, :-1])
    with pytest.raises(ValueError, match="do not pair up"):
        compare(B1, A1[:3], B2, A2)


# factored_svd: the SVD of B·A without forming it --------------------------------------------------------


def exact_truncation(W: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LAPACK's best rank-``rank`` approximation of W in fp64, and all of W's singular values."""
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    return (U[:, :rank] * S[:rank]) @ Vh[:rank], S


@pytest.mark.parametrize("rank", [None, 5])
def test_factored_svd_of_well_conditioned_factors_matches_lapack(rank):
    """The Gram route (well-conditioned factors, the usual case): every singular value and the leading
    singular vectors to fp64 rounding."""
    B, A = factors(24, seed=20)
    svd = factored_svd(B, A, rank=rank)
    W = dense(B, A)
    _, S = exact_truncation(W, 1)
    assert torch.allclose(svd.S, S[:24], rtol=1e-12, atol=1e-15 * float(S[0]))
    keep = 24 if rank is None else rank
    assert svd.U.shape == (D, keep) and svd.Vh.shape == (keep, K)
    assert torch.allclose(svd.U.T @ svd.U, torch.eye(keep, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(svd.Vh @ svd.Vh.T, torch.eye(keep, dtype=torch.float64), atol=1e-12)
    B_r, A_r, error = truncate(svd, 5)
    best, _ = exact_truncation(W, 5)
    assert float((B_r @ A_r - best).norm() / best.norm()) <= 1e-12
    assert error == pytest.approx(float(S[5:].norm() / S.norm()), rel=1e-12)


@pytest.mark.parametrize("kind", ["duplicate", "nearly_cancelling", "zero_columns"])
def test_factored_svd_of_ill_conditioned_factors_stays_exact(kind):
    """Factors whose Gram matrices would lose digits (κ > 1e4) go through QR: still exact."""
    B, A = factors(8, seed=21)
    W = dense(B, A)
    if kind == "duplicate":  # the same adapter twice: B's columns repeat
        B, A, W = torch.cat([B, 0.5 * B], dim=1), torch.cat([A, A], dim=0), 1.5 * W
    elif kind == "nearly_cancelling":  # Δ − (Δ + ε): ΔW ~1e-8 of the factors' norms
        B2 = B + 1e-8 * noise(B.shape, seed=22) * B.abs().mean()
        W = dense(B - B2, A)  # B − B₂ is exact in fp64
        B, A = torch.cat([B, -B2], dim=1), torch.cat([A, A], dim=0)
    else:  # a zero-padded rank
        B = torch.cat([B, torch.zeros(D, 4, dtype=torch.float64)], dim=1)
        A = torch.cat([A, torch.zeros(4, K, dtype=torch.float64)], dim=0)
    svd = factored_svd(B, A, rank=3)
    best, S = exact_truncation(W, 3)
    B_r, A_r, _ = truncate(svd, 3)
    # QR is backward stable on the factors: its error is ~1e-16 of ‖B‖·‖A‖, here ~1e-8 of ‖ΔW‖ itself
    tolerance = 1e-6 if kind == "nearly_cancelling" else 1e-10
    assert float((B_r @ A_r - best).norm() / best.norm()) <= tolerance
    assert torch.allclose(svd.S[:3], S[:3], rtol=tolerance)
    assert _gram_factored_svd(B, A, 3) is None  # the Gram route would have lost those digits


# truncated_svd: dense matrices (the element-wise merges) ---------------------------------------------


def heavy_tailed(m: int, n: int, seed: int) -> torch.Tensor:
    """A dense fp32 matrix like a TIES merge: a strong low-rank part plus a full-rank tail holding most of
    the energy, so a rank-16 truncation keeps only part of it and the singular values decay slowly."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.randn(m, 24, generator=generator) @ torch.randn(24, n, generator=generator)
    return (low / 24**0.5 + 0.6 * torch.randn(m, n, generator=generator)).float()


@pytest.mark.parametrize("shape", [(600, 520), (520, 600)])
def test_randomized_truncation_converges_to_the_exact_one_and_measures_its_error(shape):
    M = heavy_tailed(*shape, seed=30)
    t = truncated_svd(M, 16)
    assert t.solver == "randomized" and 2 <= t.iterations <= 16
    assert t.B.shape == (shape[0], 16) and t.A.shape == (16, shape[1])
    best, S = exact_truncation(M, 16)
    optimum = float(S[16:].norm() / S.norm())
    product = t.B.double() @ t.A.double()
    measured = float((M.double() - product).norm() / M.double().norm())
    assert 0.3 < optimum < 0.9  # a tail that really matters
    assert measured <= optimum * (1 + 1e-6)
    assert float((product - best).norm() / best.norm()) <= 1e-4  # the same truncation, not just as good
    assert t.error == pytest.approx(measured, rel=1e-5)
    assert torch.allclose(t.A @ t.A.T, torch.eye(16), atol=1e-5)  # A = Vh: orthonormal rows, S on B
    again = truncated_svd(M, 16)
    assert torch.equal(again.B, t.B) and torch.equal(again.A, t.A)  # seeded: deterministic
    other = truncated_svd(M, 16, seed=1)
    assert not torch.equal(other.A, t.A) and other.error <= optimum * (1 + 1e-6)


def test_small_matrices_are_truncated_exactly():
    M = heavy_tailed(90, 70, seed=31)
    t = truncated_svd(M, 8)
    best, S = exact_truncation(M, 8)
    assert t.solver == "exact"
    assert float((t.B.double() @ t.A.double() - best).norm() / best.norm()) <= 1e-5
    assert t.error == pytest.approx(float(S[8:].norm() / S.norm()), rel=1e-6)


def test_randomized_truncation_of_low_rank_and_zero_matrices():
    """A matrix of rank 10 < the sketch: the truncation to rank 16 is the matrix itself; zero stays zero."""
    generator = torch.Generator().manual_seed(32)
    M = torch.randn(500, 10, generator=generator) @ torch.randn(10, 480, generator=generator)
    t = truncated_svd(M, 16)
    assert t.solver == "randomized"
    assert float((t.B @ t.A - M).norm() / M.norm()) <= 1e-5 and t.error <= 1e-5
    zero = truncated_svd(torch.zeros(500, 480), 16)
    assert zero.error == 0.0 and not zero.B.any() and zero.B.shape == (500, 16)
