"""GLAG's Adaptive Feature Generator (Zhang & Xiang 2022, §4.2) at any scale.

The generator draws features for class y around a real (Tukey-transformed) sample x̂_i of y, or from
y's own Gaussian. With the support set S of x̂_i and weights ω̄_j = ω_j / Σ ω (Eq. 7–10):

    μ = (1 − β)·x̂_i + β·Σ_j ω̄_j μ_j,     Σ = (1 − β)²·Σ_y + β²·Σ_j ω̄_j Σ_j + γ·11ᵀ

(γ is added to every entry, as free-lunch calibration's code does: the rank-one term γ·11ᵀ).

Two representations of the class covariances Σ_c (``afg_cov``):

- ``exact``: the D×D sample covariances. Per epoch every tail sample's Σ is formed and given a
  symmetric square root (one eigendecomposition per tail sample), as GLAG describes. Memory grows
  with C·D² + (tail samples)·D²: 16.8 GB of class covariances alone for ImageNet-LT at D = 2048,
  137 GB for iNaturalist — fine for CIFAR (D = 64).
- ``lowrank``: Σ_c ≈ F_c F_cᵀ + σ_c² I, the top-r eigenvectors (r = ``afg_rank``) with their exact
  eigenvalues, the discarded variance spread isotropically (probabilistic PCA: σ_c² = the mean of
  the discarded eigenvalues, so the trace is kept). A class with at most r + 1 samples is represented
  exactly (its covariance has rank ≤ r). Nothing D×D is formed: since a sum of independent Gaussians
  is Gaussian with the summed covariance, a draw is

      x = μ + (1 − β)·(F_y z₀ + σ_y ε₀) + β·Σ_j √ω̄_j (F_j z_j + σ_j ε_j) + √γ·u·1,

  with z, ε, u independent standard normals (the isotropic parts merge into one ε scaled by
  √((1 − β)² σ_y² + β² Σ ω̄_j σ_j²)). Memory: C·D·(r + 1) floats plus the tail samples' features.

``auto`` picks ``exact`` when :func:`afg_memory`'s estimate for it is within ``afg_memory_gb``.
Either way the epoch's generated features are not materialised: an epoch *plan* (class, anchor)
is drawn and shuffled at the epoch's start, and each training step draws its share (exact: in
blocks of bounded memory; low-rank: one sparse × dense product per step).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

BYTES = 4  # float32 storage
BLOCK_BYTES = 256 * 2**20  # working memory of a block of exact draws (gathered D×D roots)
Mode = Literal["exact", "lowrank"]


def afg_memory(counts: Sequence[int], dim: int, mode: Mode, rank: int = 32, head_threshold: int = 100,
               support_k: int = 2) -> dict[str, int]:
    """Bytes the generator holds, by part, for these training counts and feature dimension D.

    Both: ``features`` (N·D, the transformed training features while the statistics are computed),
    ``means`` (C·D), ``anchors`` (the tail classes' features, N_t·D, and their support sets N_t·k
    indices and weights), ``plan`` (one class and one anchor index per generated feature of an epoch,
    P = Σ_c (N_max − N_c)). exact: ``class_covariances`` and ``class_roots`` (C·D² each),
    ``anchor_roots`` (N_t·D²), a draw ``block``, and ``calibration``: the transient peak of each
    epoch's calibration of the anchors' covariances, (2k + 10)·N_t·D² floats (the gathered support
    covariances and their weighted copies, 2k; the gathered own covariances, the sum and the
    expression's temporaries, 4; the float64 copy and eigenvectors of the root, 4; the result, 2).
    lowrank: ``class_factors`` (C·D·r + C residual variances). Floats are 4 bytes, indices 8."""
    c, d = len(counts), int(dim)
    n_tail = sum(int(n) for n in counts if n <= head_threshold)
    plan = sum(max(counts) - int(n) for n in counts)
    parts = {"features": sum(int(n) for n in counts) * d * BYTES, "means": c * d * BYTES,
             "anchors": n_tail * d * BYTES + n_tail * support_k * (8 + BYTES), "plan": plan * 2 * 8}
    if mode == "exact":
        parts.update(class_covariances=c * d * d * BYTES, class_roots=c * d * d * BYTES,
                     anchor_roots=n_tail * d * d * BYTES, block=BLOCK_BYTES,
                     calibration=(2 * support_k + 10) * n_tail * d * d * BYTES)
    else:
        parts.update(class_factors=c * d * rank * BYTES + c * BYTES)
    return parts


def choose_mode(requested: str, counts: Sequence[int], dim: int, rank: int, budget_gb: float,
                head_threshold: int = 100, support_k: int = 2) -> Mode:
    """``exact`` / ``lowrank`` as requested; ``auto``: exact when its estimate fits ``budget_gb``."""
    if requested in ("exact", "lowrank"):
        return requested  # type: ignore[return-value]
    need = sum(afg_memory(counts, dim, "exact", rank, head_threshold, support_k).values())
    return "exact" if need <= budget_gb * 1e9 else "lowrank"


def class_stats(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean (C, D) and covariance (C, D, D), 1/(N_k − 1) (Eq. 5–6); zero for N_k ≤ 1."""
    d = x.shape[1]
    mu, cov = x.new_zeros(num_classes, d), x.new_zeros(num_classes, d, d)
    for k in range(num_classes):
        xk = x[y == k]
        if len(xk):
            mu[k] = xk.mean(0)
        if len(xk) > 1:
            c = xk - mu[k]
            cov[k] = c.t() @ c / (len(xk) - 1)
    return mu, cov


def support_sets(xh: torch.Tensor, mu: torch.Tensor, counts: torch.Tensor, cls: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For samples ``xh`` (n, D) of class ``cls``: the ``k`` nearest classes with more training
    samples (Eq. 7) as indices (n, k') and weights ω_j = N_j / d_ij (Eq. 10); k' = 0 if none."""
    cand = torch.nonzero(counts > counts[cls]).flatten()
    if len(cand) == 0:
        return xh.new_zeros(len(xh), 0, dtype=torch.long), xh.new_zeros(len(xh), 0)
    d = torch.cdist(xh, mu[cand])
    top = d.topk(min(k, len(cand)), dim=1, largest=False)
    idx = cand[top.indices]
    return idx, counts[idx].to(xh.dtype) / top.values.clamp_min(1e-12)


def calibrate(xh: torch.Tensor, own_cov: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor, idx: torch.Tensor,
              w: torch.Tensor, beta: float | torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibrated means (n, D) and covariances (n, D, D) of Eq. 8–9 (``beta``: a number or one per
    sample; ``own_cov``: (D, D) or one per sample)."""
    wn = w / w.sum(1, keepdim=True)
    m = (wn[..., None] * mu[idx]).sum(1)
    s = (wn[..., None, None] * cov[idx]).sum(1)
    b = torch.as_tensor(beta, dtype=xh.dtype, device=xh.device)
    bv = b[:, None] if b.dim() else b
    bm = b[:, None, None] if b.dim() else b
    return (1 - bv) * xh + bv * m, (1 - bm) ** 2 * own_cov + bm ** 2 * s + gamma


def lowrank_class_stats(x: torch.Tensor, y: torch.Tensor, num_classes: int,
                        rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class mean (C, D), factor F (C, D, r) and residual variance σ² (C,) with
    F Fᵀ + σ² I = the sample covariance (1/(N_k − 1)) on its top-r eigenspace and σ² on the rest.
    One eigendecomposition of the smaller Gram matrix per class (N_k × N_k or D × D), in float64."""
    d = x.shape[1]
    mu, factor, resid = x.new_zeros(num_classes, d), x.new_zeros(num_classes, d, rank), x.new_zeros(num_classes)
    for k in range(num_classes):
        xk = x[y == k].double()
        n = len(xk)
        if n:
            mu[k] = xk.mean(0).to(x.dtype)
        if n < 2:
            continue
        c = xk - xk.mean(0)
        if n <= d:  # Σ = cᵀc/(n−1) shares its non-zero eigenvalues with the Gram matrix c cᵀ/(n−1)
            evals, u = torch.linalg.eigh(c @ c.t() / (n - 1))
            evals, u = evals.flip(0).clamp_min(0), u.flip(1)
            q = min(rank, n - 1, d)
            vecs = (c.t() @ u[:, :q]) / (evals[:q] * (n - 1)).sqrt().clamp_min(1e-30)
        else:
            evals, vecs = torch.linalg.eigh(c.t() @ c / (n - 1))
            evals, vecs = evals.flip(0).clamp_min(0), vecs.flip(1)
            q = min(rank, d)
            vecs = vecs[:, :q]
        total = float((c * c).sum() / (n - 1))
        top = evals[:q]
        sigma2 = max(total - float(top.sum()), 0.0) / (d - q) if d > q else 0.0
        factor[k, :, :q] = (vecs * (top - sigma2).clamp_min(0).sqrt()).to(x.dtype)
        resid[k] = sigma2
    return mu, factor, resid


def psd_root(cov: torch.Tensor) -> torch.Tensor:
    """R with R Rᵀ = cov for (…, D, D) symmetric PSD matrices (eigendecomposition in float64;
    singular covariances are fine)."""
    evals, evecs = torch.linalg.eigh(cov.double())
    return (evecs * evals.clamp_min(0).sqrt()[..., None, :]).to(cov.dtype)


def epoch_plan(counts: Sequence[int], own: torch.Tensor, anchor_start: Sequence[int], anchor_count: Sequence[int],
               g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(class, anchor) of each feature to generate this epoch, shuffled. Class c gets N_max − N_c;
    an ``own`` class draws from its own Gaussian (anchor −1), another spreads its draws evenly over
    its anchors (the remainder on a random subset)."""
    n_max = max(counts)
    cls, anc = [], []
    for c, n in enumerate(counts):
        need = n_max - int(n)
        if need <= 0:
            continue
        if bool(own[c]) or anchor_count[c] == 0:
            cls.append(torch.full((need,), c))
            anc.append(torch.full((need,), -1))
            continue
        m = anchor_count[c]
        share = torch.full((m,), need // m)
        share[torch.randperm(m, generator=g)[: need % m]] += 1
        cls.append(torch.full((need,), c))
        anc.append(torch.repeat_interleave(anchor_start[c] + torch.arange(m), share))
    if not cls:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    cls_t, anc_t = torch.cat(cls), torch.cat(anc)
    perm = torch.randperm(len(cls_t), generator=g)
    return cls_t[perm], anc_t[perm]


def block_size(dim: int, width: int) -> int:
    """Draws per block so that the gathered (n, width, D) floats stay within ``BLOCK_BYTES``."""
    return max(1, BLOCK_BYTES // max(1, width * dim * BYTES))


def lowrank_draw(mean: torch.Tensor, comps: torch.Tensor, coefs: torch.Tensor, gamma: torch.Tensor,
                 factor_rows: torch.Tensor, resid: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x_i = mean_i + Σ_t coefs_it (F[comps_it] z_it + σ[comps_it] ε) + √γ_i u_i 1, i.e. one draw
    from N(mean_i, Σ_t coefs_it² (F Fᵀ + σ² I)[comps_it] + γ_i 11ᵀ) per row. ``factor_rows``: the
    factors as (C·r, D), row c·r + k = column k of F_c. The low-rank parts are one sparse × dense
    product (n·T·r non-zeros): no factor is gathered per draw."""
    n, d = mean.shape
    t = comps.shape[1]
    r = factor_rows.shape[0] // len(resid)
    cf = coefs.to(mean.dtype)
    z = torch.randn(n, t, r, generator=g, device=mean.device, dtype=mean.dtype)
    rows = torch.arange(n, device=mean.device)[:, None, None].expand(n, t, r)
    cols = comps[:, :, None] * r + torch.arange(r, device=mean.device)
    picks = torch.sparse_coo_tensor(torch.stack([rows.flatten(), cols.flatten()]), (cf[..., None] * z).flatten(),
                                    (n, factor_rows.shape[0]), check_invariants=False).coalesce()
    low = torch.sparse.mm(picks, factor_rows.to(mean.dtype))
    iso = (cf.pow(2) * resid[comps].to(mean.dtype)).sum(1).sqrt()  # (n,)
    eps = torch.randn(n, d, generator=g, device=mean.device, dtype=mean.dtype)
    u = torch.randn(n, 1, generator=g, device=mean.device, dtype=mean.dtype)
    return mean + low + iso[:, None] * eps + gamma.to(mean.dtype).clamp_min(0).sqrt()[:, None] * u


def root_draw(mean: torch.Tensor, roots: torch.Tensor, index: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x_i = mean_i + roots[index_i] z_i (blocks of bounded memory)."""
    n, d = mean.shape
    out = torch.empty_like(mean)
    step = block_size(d, d)
    for s in range(0, n, step):
        sl = slice(s, min(n, s + step))
        z = torch.randn(len(index[sl]), d, 1, generator=g, device=mean.device, dtype=mean.dtype)
        out[sl] = mean[sl] + (roots[index[sl]].to(mean.dtype) @ z).squeeze(-1)
    return out




class FeatureGenerator:
    """AFG over fixed transformed training features ``xh`` (N, D) with labels ``y``.

    Head classes (``is_head``) and tail classes that no class out-numbers draw from their own
    Gaussian N(μ_c, Σ_c); the other tail classes draw around their samples (*anchors*), each with its
    support set (the ``support_k`` nearest more frequent classes, Eq. 7, 10), calibrated with the
    class's β (Eq. 8–9). Call :meth:`start_epoch` (β, generators), then :meth:`take` per step."""

    def __init__(self, xh: torch.Tensor, y: torch.Tensor, counts: Sequence[int], is_head: torch.Tensor,
                 support_k: int, gamma: float, mode: Mode, rank: int = 32):
        c_num, dev = len(counts), xh.device
        self.counts, self.mode, self.gamma = [int(n) for n in counts], mode, float(gamma)
        if mode == "exact":
            self.mu, self.cov = class_stats(xh, y, c_num)
            self.own_roots = psd_root(self.cov)
        else:
            self.mu, factor, self.resid = lowrank_class_stats(xh, y, c_num, rank)
            self.factor_rows = factor.transpose(1, 2).reshape(c_num * rank, -1).contiguous()  # (C·r, D)
            del factor
        counts_t = torch.tensor(self.counts, device=dev)
        self.own = is_head.to(dev).bool()
        self.anchor_start, self.anchor_count = [0] * c_num, [0] * c_num
        xs, cls, idxs, ws = [], [], [], []
        for c in range(c_num):
            if bool(self.own[c]) or self.counts[c] >= max(self.counts):
                continue
            xc = xh[y == c]
            idx, w = support_sets(xc, self.mu, counts_t, c, support_k)
            if idx.shape[1] == 0:
                continue
            pad = support_k - idx.shape[1]  # fewer candidates than k: weight-0 padding
            idx = torch.cat([idx, idx[:, :1].expand(-1, pad)], 1)
            w = torch.cat([w / w.sum(1, keepdim=True), w.new_zeros(len(w), pad)], 1)
            self.anchor_start[c], self.anchor_count[c] = sum(len(v) for v in xs), len(xc)
            xs.append(xc), cls.append(torch.full((len(xc),), c, device=dev)), idxs.append(idx), ws.append(w)
        d = xh.shape[1]
        self.anchor_x = torch.cat(xs) if xs else xh.new_zeros(0, d)
        self.anchor_cls = torch.cat(cls) if cls else torch.zeros(0, dtype=torch.long, device=dev)
        self.support_idx = torch.cat(idxs) if idxs else torch.zeros(0, support_k, dtype=torch.long, device=dev)
        self.support_w = torch.cat(ws) if ws else xh.new_zeros(0, support_k)
        self.plan = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        self.cursor = 0

    @property
    def plan_size(self) -> int:
        return len(self.plan[0])

    def start_epoch(self, beta: torch.Tensor, plan_gen: torch.Generator, draw_gen: torch.Generator) -> None:
        """The epoch's shuffled plan; β (C,) for this epoch's calibration; the generator of the draws."""
        self.beta = beta.detach().to(self.mu.device, self.mu.dtype).clone()
        cls, anc = epoch_plan(self.counts, self.own.cpu(), self.anchor_start, self.anchor_count, plan_gen)
        self.plan, self.cursor, self.gen = (cls.to(self.mu.device), anc.to(self.mu.device)), 0, draw_gen
        if self.mode == "exact" and len(self.anchor_x):
            b = self.beta[self.anchor_cls]
            means, covs = calibrate(self.anchor_x, self.cov[self.anchor_cls], self.mu, self.cov, self.support_idx,
                                    self.support_w, b, self.gamma)
            self.anchor_mean, self.anchor_roots = means, psd_root(covs)

    def draw(self, cls: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """One feature per (class, anchor) pair; anchor −1: from the class's own Gaussian."""
        x = self.mu.new_empty(len(cls), self.mu.shape[1])
        own = anchor < 0
        if bool(own.any()):
            c = cls[own]
            if self.mode == "exact":
                x[own] = root_draw(self.mu[c], self.own_roots, c, self.gen)
            else:
                ones = self.mu.new_ones(len(c), 1)
                x[own] = lowrank_draw(self.mu[c], c[:, None], ones, self.mu.new_zeros(len(c)),
                                      self.factor_rows, self.resid, self.gen)
        if bool((~own).any()):
            a = anchor[~own]
            if self.mode == "exact":
                x[~own] = root_draw(self.anchor_mean[a], self.anchor_roots, a, self.gen)
            else:
                b = self.beta[self.anchor_cls[a]][:, None]
                idx, w = self.support_idx[a], self.support_w[a]
                mean = (1 - b) * self.anchor_x[a] + b * (w[..., None] * self.mu[idx]).sum(1)
                comps = torch.cat([self.anchor_cls[a][:, None], idx], 1)
                coefs = torch.cat([1 - b, b * w.sqrt()], 1)
                x[~own] = lowrank_draw(mean, comps, coefs, mean.new_full((len(a),), self.gamma),
                                       self.factor_rows, self.resid, self.gen)
        return x

    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``n`` planned features (cycling through the plan) and their labels."""
        if self.plan_size == 0 or n <= 0:
            return self.mu.new_zeros(0, self.mu.shape[1]), torch.zeros(0, dtype=torch.long, device=self.mu.device)
        pick = torch.arange(self.cursor, self.cursor + n, device=self.mu.device) % self.plan_size
        self.cursor += n
        cls, anc = self.plan[0][pick], self.plan[1][pick]
        with torch.autocast(self.mu.device.type, enabled=False):  # draws in the statistics' precision
            return self.draw(cls, anc), cls
