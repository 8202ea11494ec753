"""Tests for edgemask.attacks.deepfool.

Closed forms first (affine classifiers, where one DeepFool step is exact), then
batching, clipping, bookkeeping and error handling on tiny CNNs.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edgemask.attacks import DeepFoolResult, deepfool
from edgemask.errors import ConfigError, ModelError

ETA = 0.02


def affine(num_classes: int, shape=(1, 4, 4), seed: int = 0) -> nn.Sequential:
    """Flatten + Linear in float64, so the closed forms hold to ~1e-12."""
    g = torch.Generator().manual_seed(seed)
    d = math.prod(shape)
    lin = nn.Linear(d, num_classes).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(num_classes, d, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(num_classes, generator=g, dtype=torch.float64))
    return nn.Sequential(nn.Flatten(), lin)


def logits_and_rows(model: nn.Sequential, x: torch.Tensor):
    lin = model[1]
    with torch.no_grad():
        return model(x), lin.weight.detach()


# ---------------------------------------------------------------------------
# closed forms


def test_linear_binary_l2_is_the_orthogonal_projection():
    model = affine(2, shape=(1, 5, 5))
    x = torch.rand(6, 1, 5, 5, dtype=torch.float64)
    res = deepfool(model, x, clip=None, overshoot=ETA)

    logits, W = logits_and_rows(model, x)
    k0 = logits.argmax(1)
    k = 1 - k0
    w = W[k] - W[k0]  # (N, D) normal of the boundary, pointing away from k0
    f = logits.gather(1, k[:, None]).squeeze(1) - logits.gather(1, k0[:, None]).squeeze(1)
    wn = w.norm(dim=1)
    dist = f.abs() / wn  # distance to the hyperplane

    r = res.r.flatten(1)
    cos = (r * w).sum(1) / (r.norm(dim=1) * wn)
    assert torch.all(cos >= 1 - 1e-6), cos
    expected = (1 + ETA) * (dist + 1e-4 / wn)
    assert torch.allclose(res.l2, expected, rtol=1e-5, atol=0), (res.l2, expected)
    assert torch.equal(res.iterations, torch.ones(6, dtype=torch.int64))
    assert res.success.all()
    assert torch.equal(res.pred_adv, k)
    assert torch.allclose(res.x_adv, x + res.r)
    assert torch.allclose(res.margin, f.abs())
    # One step linearised at x, overshot by (1+η): the final logit gap past the
    # boundary is η·|f| + (1+η)·1e-4 exactly, for a linear model.
    assert torch.allclose(res.margin_adv, ETA * f.abs() + (1 + ETA) * 1e-4, rtol=1e-6, atol=1e-12)


def test_multiclass_affine_one_step_reaches_nearest_boundary():
    model = affine(6, shape=(1, 4, 4), seed=3)
    x = torch.rand(10, 1, 4, 4, dtype=torch.float64)
    res = deepfool(model, x, clip=None, overshoot=ETA)

    logits, W = logits_and_rows(model, x)
    k0 = logits.argmax(1)
    for i in range(x.shape[0]):
        others = [k for k in range(6) if k != k0[i]]
        dists = torch.stack([(logits[i, k] - logits[i, k0[i]]).abs() / (W[k] - W[k0[i]]).norm() for k in others])
        j = int(dists.argmin())
        wl = W[others[j]] - W[k0[i]]
        expected = (1 + ETA) * (dists[j] + 1e-4 / wl.norm())
        assert res.l2[i] == pytest.approx(float(expected), rel=1e-6)
        r = res.r[i].flatten()
        assert float(r @ wl / (r.norm() * wl.norm())) >= 1 - 1e-9
    assert torch.equal(res.iterations, torch.ones(10, dtype=torch.int64))
    assert res.success.all()


def test_linear_binary_linf_steps_along_sign_of_w():
    model = affine(2, shape=(1, 4, 4), seed=5)
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    res = deepfool(model, x, norm="linf", clip=None, overshoot=ETA)

    logits, W = logits_and_rows(model, x)
    k0 = logits.argmax(1)
    k = 1 - k0
    w = W[k] - W[k0]
    f = (logits.gather(1, k[:, None]) - logits.gather(1, k0[:, None])).squeeze(1)
    expected_linf = (1 + ETA) * (f.abs() + 1e-4) / w.abs().sum(1)
    assert torch.allclose(res.linf, expected_linf, rtol=1e-6, atol=0)
    # Every coordinate moves by the same amount, in the direction of sign(w).
    r = res.r.flatten(1)
    assert torch.allclose(r, expected_linf[:, None] * w.sign(), rtol=1e-6, atol=1e-12)
    assert torch.equal(res.iterations, torch.ones(5, dtype=torch.int64))
    assert res.success.all()


def test_candidates_restrict_to_top_classes_of_clean_logits():
    model = affine(10, shape=(1, 4, 4), seed=7)
    x = torch.rand(8, 1, 4, 4, dtype=torch.float64)
    res = deepfool(model, x, clip=None, candidates=3)

    logits, W = logits_and_rows(model, x)
    top = logits.topk(3, dim=1).indices
    for i in range(x.shape[0]):
        k0 = int(top[i, 0])
        dists = [float((logits[i, k] - logits[i, k0]).abs() / (W[k] - W[k0]).norm()) for k in top[i, 1:]]
        wl = W[int(top[i, 1 + dists.index(min(dists))])] - W[k0]
        assert res.l2[i] == pytest.approx((1 + ETA) * (min(dists) + 1e-4 / float(wl.norm())), rel=1e-6)
    assert res.success.all()


# ---------------------------------------------------------------------------
# against a plain one-image implementation written from the paper


def paper_deepfool(model, x1, norm, overshoot=ETA, max_iter=50, clip=(0.0, 1.0)):
    """DeepFool on one image (1, C, H, W), as in the paper's reference code.

    Deliberately naive and independent of the batched code: one image, a
    Python loop over classes, the flip checked on the autograd forward at the
    top of each iteration, r_tot summed and overshot as (1 + η)·r_tot.
    """
    with torch.no_grad():
        k0 = int(model(x1).argmax(1))
    r_tot = torch.zeros_like(x1)
    x_i = x1.clone()
    it = 0
    while it < max_iter:
        xi = x_i.clone().requires_grad_(True)
        logits = model(xi)[0]
        if int(logits.argmax()) != k0:
            break
        best = None
        for k in range(logits.shape[0]):
            if k == k0:
                continue
            fk = logits[k] - logits[k0]
            (wk,) = torch.autograd.grad(fk, xi, retain_graph=True)
            dual = wk.norm() if norm == "l2" else wk.abs().sum()
            dist = abs(float(fk.detach())) / (float(dual) + 1e-8)
            if best is None or dist < best[0]:
                best = (dist, float(fk.detach()), wk, float(dual))
        _, f, w, dual = best
        if norm == "l2":
            r = (abs(f) + 1e-4) / (dual + 1e-8) * w / (dual + 1e-8)
        else:
            r = (abs(f) + 1e-4) / (dual + 1e-8) * w.sign()
        r_tot = r_tot + r
        x_i = (x1 + (1 + overshoot) * r_tot).clamp(*clip).detach()
        it += 1
    return x_i, it, k0


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_matches_a_plain_one_image_implementation_of_the_paper(make_cnn, norm):
    model = make_cnn(4, seed=2).double()
    x = torch.rand(6, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    res = deepfool(model, x, norm=norm)
    for i in range(x.shape[0]):
        x_ref, it_ref, k0 = paper_deepfool(model, x[i : i + 1], norm)
        assert int(res.pred_orig[i]) == k0
        assert int(res.iterations[i]) == it_ref, (i, int(res.iterations[i]), it_ref)
        assert (res.x_adv[i] - x_ref[0]).abs().max() <= 1e-9, i
    assert res.success.all() and res.iterations.max() >= 2


class _CountBackward(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        _CountBackward.calls += 1
        return g


class Counted(nn.Module):
    """Counts forward calls and backward passes that reach the input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return self.model(_CountBackward.apply(x) if x.requires_grad else x)


@pytest.mark.parametrize("n", [1, 12])
def test_work_per_iteration_does_not_grow_with_the_batch(make_cnn, n):
    # No per-sample loop: a clean pass, then per iteration one autograd
    # forward, K-1 backward passes and one no-grad check forward, then the
    # final re-check -- the same count for 1 sample as for 12.
    k = 5
    model = Counted(make_cnn(k, seed=3))
    x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    _CountBackward.calls = 0
    res = deepfool(model, x)
    steps = int(res.iterations.max())
    assert steps >= 2
    assert model.forwards == 2 + 2 * steps
    assert _CountBackward.calls == (k - 1) * steps


# ---------------------------------------------------------------------------
# batching and devices


def test_batched_equals_one_at_a_time_on_cnn_with_batchnorm(make_cnn):
    model = make_cnn(4)
    x = torch.rand(7, 3, 16, 16)
    full = deepfool(model, x)
    streamed = deepfool(model, x, batch_size=3)  # working set refilled as samples finish
    singles = [deepfool(model, x[i : i + 1]) for i in range(x.shape[0])]
    single_adv = torch.cat([s.x_adv for s in singles])
    single_it = torch.cat([s.iterations for s in singles])

    assert (full.x_adv - single_adv).abs().max() <= 1e-5
    assert (streamed.x_adv - single_adv).abs().max() <= 1e-5
    assert torch.equal(full.iterations, single_it)
    assert torch.equal(streamed.iterations, single_it)
    assert full.iterations.max() >= 2  # a non-linear model needs several steps
    assert full.success.all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(make_cnn):
    from edgemask.stability.provenance import tf32_pinned_off

    model = make_cnn(3)
    x = torch.rand(16, 3, 16, 16)
    cpu = deepfool(model, x)
    with tf32_pinned_off():  # TF32 convolutions would differ from the CPU by ~1e-3 (and restored after)
        gpu = deepfool(model.cuda(), x.cuda())
    assert gpu.x_adv.device.type == "cuda"
    assert torch.equal(gpu.success.cpu(), cpu.success)
    assert torch.equal(gpu.iterations.cpu(), cpu.iterations)
    assert (gpu.x_adv.cpu() - cpu.x_adv).abs().max() <= 1e-4


# ---------------------------------------------------------------------------
# a real (trained) classifier


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fools_a_trained_cnn_and_stays_in_the_box(trained_cnn, norm):
    model, x, y = trained_cnn
    with torch.no_grad():
        assert (model(x).argmax(1) == y).double().mean() > 0.9
    res = deepfool(model, x, norm=norm, labels=y)
    assert res.success.double().mean() >= 0.99
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(model(res.x_adv).argmax(1), res.pred_adv)
    assert torch.allclose(res.r, res.x_adv - x)
    ok = res.success
    assert torch.all(res.l2[ok] > 0)
    assert torch.allclose(res.rho, res.l2 / x.flatten(1).norm(dim=1))
    with torch.no_grad():
        la = model(res.x_adv)
    gap = la.masked_fill(nn.functional.one_hot(res.pred_orig, 3).bool(), -math.inf).amax(1) - la.gather(
        1, res.pred_orig[:, None]
    ).squeeze(1)
    assert torch.allclose(res.margin_adv, gap, atol=1e-5)
    assert torch.equal(res.margin_adv > 0, res.success)
    # The attacked norm is the small one: L2 attack -> small l2, Linf -> small linf.
    other = deepfool(model, x, norm="linf" if norm == "l2" else "l2")
    if norm == "l2":
        assert res.l2[ok].median() < other.l2[other.success].median()
    else:
        assert res.linf[ok].median() < other.linf[other.success].median()


def test_success_is_rechecked_after_clipping():
    # Class 1 needs sum(x) > d + 1, impossible inside [0, 1]^d: the linear
    # step points the right way, but clipping undoes it every time.
    d = 8
    lin = nn.Linear(d, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros(d), torch.ones(d)]).double())
        lin.bias.copy_(torch.tensor([0.0, -(d + 1.0)], dtype=torch.float64))
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(4, 1, 2, 4, dtype=torch.float64)

    free = deepfool(model, x, clip=None, max_iter=5)
    assert free.success.all()  # without the box the flip is reachable

    boxed = deepfool(model, x, clip=(0.0, 1.0), max_iter=5)
    assert not boxed.success.any()
    assert torch.equal(boxed.pred_adv, boxed.pred_orig)
    assert boxed.x_adv.min() >= 0 and boxed.x_adv.max() <= 1
    assert torch.equal(boxed.iterations, torch.full((4,), 5))
    assert torch.isfinite(boxed.r).all()


# ---------------------------------------------------------------------------
# reference label, degenerate models


def test_misclassified_input_is_attacked_away_from_its_prediction():
    model = affine(3, seed=11)
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        pred = model(x).argmax(1)
    wrong = (pred + 1) % 3  # ground truth that disagrees with every prediction
    res = deepfool(model, x, clip=None, labels=wrong)
    plain = deepfool(model, x, clip=None)

    assert torch.equal(res.pred_orig, pred)
    assert res.success.all()
    assert torch.all(res.pred_adv != pred)
    assert torch.equal(res.x_adv, plain.x_adv)  # labels never change the attack
    assert torch.equal(res.labels, wrong)
    summary = res.summary()
    assert summary["clean_accuracy"] == 0.0
    assert "clean_accuracy" not in plain.summary()


class ConstantLogits(nn.Module):
    def __init__(self, uses_input: bool) -> None:
        super().__init__()
        self.uses_input = uses_input
        self.bias = nn.Parameter(torch.tensor([0.5, 2.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bias.expand(x.shape[0], 3)
        return out + 0.0 * x.sum(dim=(1, 2, 3))[:, None] if self.uses_input else out


class TiedFlatClass(nn.Module):
    """Logits (1, 1, w·x): class 1 ties class 0 and has no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1.0, 1.0, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        one = torch.ones(x.shape[0], 1) + 0.0 * flat[:, :1]
        return torch.cat([one, one, (flat @ self.w)[:, None]], dim=1)


def test_flat_tied_candidate_is_not_chosen():
    # |f_1 - f_0| = 0 and ‖w_1 - w_0‖ = 0: a naive argmin of 0/(0 + 1e-8)
    # picks class 1 and takes zero-length steps forever.
    x = torch.full((2, 1, 4, 4), 0.5)
    res = deepfool(TiedFlatClass(), x, clip=None)
    assert torch.equal(res.pred_orig, torch.zeros(2, dtype=torch.int64))
    assert res.success.all()
    assert torch.equal(res.pred_adv, torch.full((2,), 2))
    assert torch.equal(res.iterations, torch.ones(2, dtype=torch.int64))
    assert not res.zero_grad.any()


@pytest.mark.parametrize("uses_input", [True, False])
def test_zero_gradient_model_stops_without_nan(uses_input):
    x = torch.rand(5, 3, 4, 4)
    res = deepfool(ConstantLogits(uses_input), x)
    assert res.zero_grad.all()
    assert not res.success.any()
    assert torch.count_nonzero(res.r) == 0
    assert torch.equal(res.x_adv, x)
    assert torch.equal(res.iterations, torch.zeros(5, dtype=torch.int64))
    for t in (res.l2, res.linf, res.rho, res.margin):
        assert torch.isfinite(t).all()


# Seeds picked so the random net's boundary is reachable inside [0, 1]^d
# (some random 2-class ReLU nets put one class out of reach).
@pytest.mark.parametrize(("num_classes", "candidates", "seed"), [(2, None, 0), (10, 3, 1), (10, None, 1)])
def test_two_and_many_class_cnns(make_cnn, num_classes, candidates, seed):
    model = make_cnn(num_classes, seed=seed)
    x = torch.rand(6, 3, 16, 16)
    res = deepfool(model, x, candidates=candidates)
    assert isinstance(res, DeepFoolResult)
    assert res.success.all()
    assert res.pred_orig.max() < num_classes
    for name in ("iterations", "success", "pred_orig", "pred_adv", "l2", "linf", "rho", "margin"):
        assert getattr(res, name).shape == (6,), name
    assert res.iterations.dtype == torch.int64
    assert torch.all(res.margin >= 0)


def test_iterations_capped_by_max_iter(trained_cnn):
    model, x, _ = trained_cnn
    res = deepfool(model, x[:16], max_iter=1)
    assert res.iterations.max() == 1
    assert res.success.double().mean() < 1  # one step is not enough for all of them


# ---------------------------------------------------------------------------
# the model is left as it was


def test_modes_restored_and_no_param_grads_or_bn_updates(make_cnn):
    model = make_cnn(3)
    model.train()
    model.features[5].eval()  # a deliberately frozen BN stays frozen afterwards
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 3, 16, 16)

    res = deepfool(model, x)

    assert model.training and model.features[1].training
    assert not model.features[5].training
    for k, v in model.state_dict().items():  # BN ran in eval mode: stats unchanged
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    # ...and the attack itself saw the eval-mode model.
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), res.pred_orig)


def test_works_inside_no_grad_and_keeps_dtype_and_layout(make_cnn):
    model = make_cnn(3)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        res = deepfool(model, x)
    assert res.success.all()
    assert res.x_adv.dtype == x.dtype and res.x_adv.is_contiguous()
    assert not res.x_adv.requires_grad


# ---------------------------------------------------------------------------
# errors and warnings


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "l1"}, "l2, linf"),
        ({"overshoot": -0.1}, "overshoot"),
        ({"max_iter": 0}, "max_iter"),
        ({"candidates": 1}, "candidates"),
        ({"batch_size": 0}, "batch_size"),
        ({"clip": (1.0, 0.0)}, "clip"),
        ({"labels": torch.zeros(3, dtype=torch.int64)}, "labels"),
    ],
)
def test_bad_options_raise_config_error(kwargs, match):
    model = affine(3).float()
    with pytest.raises(ConfigError, match=match):
        deepfool(model, torch.rand(2, 1, 4, 4), **kwargs)


@pytest.mark.parametrize(
    "x",
    [torch.rand(16), torch.rand(1, 4, 4), torch.randint(0, 255, (2, 1, 4, 4)), torch.full((2, 1, 4, 4), 2.0)],
    ids=["1d", "3d", "uint8", "outside-clip"],
)
def test_bad_input_raises_config_error(x):
    with pytest.raises(ConfigError):
        deepfool(affine(3).float(), x)


def test_model_on_another_device_raises_config_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3, device="meta"))
    with pytest.raises(ConfigError, match="device"):
        deepfool(model, torch.rand(2, 1, 4, 4))


def test_single_output_model_raises_model_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    with pytest.raises(ModelError, match="K >= 2"):
        deepfool(model, torch.rand(2, 1, 4, 4))


def test_softmax_output_warns():
    model = nn.Sequential(affine(3).float(), nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="logits"):
        deepfool(model, torch.rand(3, 1, 4, 4), max_iter=2)


def test_logits_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deepfool(affine(3).float(), torch.rand(3, 1, 4, 4))


# ---------------------------------------------------------------------------
# serialisation


def test_to_dict_is_strict_json_with_summary(trained_cnn):
    model, x, y = trained_cnn
    res = deepfool(model, x[:8], labels=y[:8])
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    s = back["summary"]
    assert s["n"] == 8 and s["norm"] == "l2" and s["max_iter"] == 50
    assert s["fooling_rate"] == pytest.approx(float(res.success.double().mean()))
    assert s["median_l2"] == pytest.approx(float(np.median(res.l2[res.success].numpy())), rel=1e-6)
    assert len(back["samples"]["l2"]) == 8 and back["samples"]["label"] == y[:8].tolist()


def test_empty_input_gives_empty_result():
    res = deepfool(affine(3).float(), torch.rand(0, 1, 4, 4))
    assert res.x_adv.shape == (0, 1, 4, 4) and res.success.shape == (0,)
    assert res.summary()["fooling_rate"] is None
