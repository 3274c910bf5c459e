"""Tests for the two-view SSL methods (genview/methods/{simclr,mocov2,byol,simsiam,swav,mocov3}.py), their heads and
their pure loss functions: each loss against a plain re-computation, each method against its usual scalar loss,
training on tiny data, momentum encoders and queues, the registry, and 2-process gloo runs against one process.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from genview.errors import ConfigError
from genview.methods import build_method, method_class
from genview.methods.heads import ema_update, frozen_copy, mlp_head
from genview.methods.losses import (
    info_nce_per_sample,
    moco_v3_per_sample,
    negative_cosine_per_sample,
    normalized_mse_per_sample,
    nt_xent_per_sample,
    sinkhorn,
    swav_per_sample,
)

METHODS = ["simclr", "mocov2", "byol", "simsiam", "swav", "mocov3"]
MOMENTUM_METHODS = ["mocov2", "byol", "mocov3"]
FEATURE_DIM = 32
IMAGE_SHAPE = (3, 8, 8)
# Every method shrunk to a few dozen units; the MoCo v2 queue holds two tiny batches.
TINY_OPTIONS = {
    "simclr": {"proj_hidden_dim": 32, "proj_dim": 16},
    "mocov2": {"proj_hidden_dim": 32, "proj_dim": 16, "queue_size": 128},
    "byol": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
    "simsiam": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 8},
    "swav": {"proj_hidden_dim": 32, "proj_dim": 16, "num_prototypes": 10},
    "mocov3": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
}


def tiny_backbone() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(IMAGE_SHAPE), FEATURE_DIM))


def tiny_method(name: str, seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    return build_method(name, tiny_backbone(), FEATURE_DIM, {**TINY_OPTIONS[name], **overrides})


def random_views(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *IMAGE_SHAPE, generator=generator), torch.randn(batch, *IMAGE_SHAPE, generator=generator)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def numpy_sinkhorn(scores: np.ndarray, epsilon: float, iterations: int) -> np.ndarray:
    """The SwAV paper's formulation: Q is K x B, rows (prototypes) normalised to 1/K, columns (samples) to 1/B."""
    q = np.exp(scores.astype(np.float64) / epsilon).T
    q /= q.sum()
    num_prototypes, num_samples = q.shape
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= num_prototypes
        q /= q.sum(axis=0, keepdims=True)
        q /= num_samples
    return (q * num_samples).T


# --- losses against plain re-computations ---------------------------------------------------------------------------


def test_nt_xent_matches_a_loop_over_anchors():
    torch.manual_seed(0)
    z1, z2, temperature = torch.randn(5, 4), torch.randn(5, 4), 0.3
    embeddings = torch.cat([z1, z2]).numpy()
    num = len(z1)
    anchor_losses = []
    for anchor in range(2 * num):
        positive = (anchor + num) % (2 * num)
        denominator = sum(
            math.exp(cosine(embeddings[anchor], embeddings[other]) / temperature)
            for other in range(2 * num)
            if other != anchor
        )
        anchor_losses.append(-cosine(embeddings[anchor], embeddings[positive]) / temperature + math.log(denominator))
    expected = [0.5 * (anchor_losses[i] + anchor_losses[num + i]) for i in range(num)]
    torch.testing.assert_close(nt_xent_per_sample(z1, z2, temperature), torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_nt_xent_local_rows_of_a_global_batch():
    torch.manual_seed(0)
    z1_all, z2_all = torch.randn(8, 4), torch.randn(8, 4)
    full = nt_xent_per_sample(z1_all, z2_all, 0.1)
    local = nt_xent_per_sample(z1_all[4:], z2_all[4:], 0.1, z1_all=z1_all, z2_all=z2_all, offset=4)
    torch.testing.assert_close(local, full[4:])


def test_info_nce_matches_explicit_logits():
    torch.manual_seed(0)
    q, k, negatives, temperature = torch.randn(4, 6), torch.randn(4, 6), torch.randn(7, 6), 0.2
    expected = []
    for i in range(len(q)):
        positive = cosine(q[i].numpy(), k[i].numpy()) / temperature
        negative = [cosine(q[i].numpy(), n.numpy()) / temperature for n in negatives]
        expected.append(-positive + math.log(math.exp(positive) + sum(math.exp(x) for x in negative)))
    torch.testing.assert_close(
        info_nce_per_sample(q, k, negatives, temperature), torch.tensor(expected), rtol=1e-5, atol=1e-5
    )


def test_moco_v3_loss_matches_explicit_softmax():
    torch.manual_seed(0)
    q, k_all, temperature, offset = torch.randn(3, 5), torch.randn(6, 5), 0.2, 3
    expected = []
    for i in range(len(q)):
        logits = [cosine(q[i].numpy(), key.numpy()) / temperature for key in k_all]
        log_softmax = logits[offset + i] - math.log(sum(math.exp(x) for x in logits))
        expected.append(-2 * temperature * log_softmax)
    torch.testing.assert_close(
        moco_v3_per_sample(q, k_all, temperature, offset), torch.tensor(expected), rtol=1e-5, atol=1e-5
    )


def test_cosine_losses_and_stop_gradient():
    torch.manual_seed(0)
    p, z = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    cosines = torch.tensor([cosine(a, b) for a, b in zip(p.detach().numpy(), z.detach().numpy())])
    torch.testing.assert_close(negative_cosine_per_sample(p, z), -cosines)
    squared_distance = ((F.normalize(p, dim=1) - F.normalize(z, dim=1)) ** 2).sum(dim=1)
    torch.testing.assert_close(normalized_mse_per_sample(p, z), squared_distance.detach())
    torch.testing.assert_close(normalized_mse_per_sample(p, z), 2 - 2 * cosines)
    normalized_mse_per_sample(p, z).sum().backward()
    assert p.grad is not None and z.grad is None


def test_sinkhorn_matches_numpy_and_balances_marginals():
    torch.manual_seed(0)
    scores = F.normalize(torch.randn(12, 4), dim=1) @ F.normalize(torch.randn(5, 4), dim=1).T
    for iterations in (3, 10):
        torch.testing.assert_close(
            sinkhorn(scores, 0.05, iterations),
            torch.from_numpy(numpy_sinkhorn(scores.numpy(), 0.05, iterations)).float(),
            rtol=1e-4,
            atol=1e-6,
        )
    codes = sinkhorn(scores, 0.5, 200)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(12))
    # Equal partition: every prototype receives B / K samples' worth of mass.
    torch.testing.assert_close(codes.sum(dim=0), torch.full((5,), 12 / 5), rtol=1e-3, atol=1e-3)


def test_sinkhorn_accepts_half_precision_scores():
    scores = (F.normalize(torch.randn(6, 3), dim=1) @ F.normalize(torch.randn(4, 3), dim=1).T).half()
    codes = sinkhorn(scores, 0.05, 3)
    assert codes.dtype == torch.float32 and torch.isfinite(codes).all()


def test_swav_loss_matches_a_loop():
    torch.manual_seed(0)
    scores1, scores2 = torch.randn(3, 4), torch.randn(3, 4)
    codes1, codes2 = torch.rand(3, 4).softmax(dim=1), torch.rand(3, 4).softmax(dim=1)
    temperature = 0.1

    def log_softmax(row):
        log_total = math.log(sum(math.exp(x / temperature) for x in row.tolist()))
        return [x / temperature - log_total for x in row.tolist()]

    expected = []
    for i in range(3):
        log_p1, log_p2 = log_softmax(scores1[i]), log_softmax(scores2[i])
        cross1 = -sum(c * log_p for c, log_p in zip(codes1[i].tolist(), log_p2))
        cross2 = -sum(c * log_p for c, log_p in zip(codes2[i].tolist(), log_p1))
        expected.append(0.5 * (cross1 + cross2))
    torch.testing.assert_close(
        swav_per_sample([scores1, scores2], [codes1, codes2], temperature),
        torch.tensor(expected),
        rtol=1e-5,
        atol=1e-5,
    )


def test_swav_multi_crop_loss_matches_a_loop():
    """Two global crops with codes and three local crops: each global crop's codes are predicted from the four
    other crops, averaged, then the two global crops averaged (the reference's loop)."""
    torch.manual_seed(1)
    scores = [torch.randn(2, 5) for _ in range(5)]
    codes = [torch.rand(2, 5).softmax(dim=1) for _ in range(2)]
    temperature = 0.1
    expected = torch.zeros(2)
    for n in range(2):
        for i in range(2):
            cross = []
            for v in range(5):
                if v != i:
                    log_p = torch.log_softmax(scores[v][n] / temperature, dim=0)
                    cross.append(-sum(float(c) * float(lp) for c, lp in zip(codes[i][n], log_p)))
            expected[n] += sum(cross) / 4 / 2
    torch.testing.assert_close(swav_per_sample(scores, codes, temperature), expected, rtol=1e-5, atol=1e-5)


# --- heads ----------------------------------------------------------------------------------------------------------


def test_mlp_head_layers():
    head = mlp_head(8, 16, 4, 3, last_batch_norm=True, last_batch_norm_affine=False)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    norms = [m for m in head if isinstance(m, nn.BatchNorm1d)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 16), (16, 4)]
    assert all(m.bias is None for m in linears)  # every linear layer is followed by BN
    assert [m.affine for m in norms] == [True, True, False]
    assert sum(isinstance(m, nn.ReLU) for m in head) == 2
    plain = mlp_head(8, 16, 4, batch_norm=False)
    assert [type(m) for m in plain] == [nn.Linear, nn.ReLU, nn.Linear]
    assert all(m.bias is not None for m in plain if isinstance(m, nn.Linear))


def test_ema_update_moves_parameters():
    torch.manual_seed(0)
    online = nn.Linear(3, 2)
    target = frozen_copy(online)
    with torch.no_grad():
        online.weight.add_(1.0)
    before = target[0].weight.clone()
    ema_update(target, [online], 1.0)
    torch.testing.assert_close(target[0].weight, before)
    ema_update(target, [online], 0.25)
    torch.testing.assert_close(target[0].weight, 0.25 * before + 0.75 * online.weight)
    ema_update(target, [online], 0.0)
    torch.testing.assert_close(target[0].weight, online.weight)


# --- methods against their usual scalar losses ----------------------------------------------------------------------


def simclr_loss(method, view1, view2):
    z = F.normalize(method.projector(method.backbone(torch.cat([view1, view2]))), dim=1)
    num = len(view1)
    logits = (z @ z.T / method.temperature).fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(num, 2 * num), torch.arange(num)])
    return F.cross_entropy(logits, targets)


def mocov2_loss(method, view1, view2):
    q = F.normalize(method.projector(method.backbone(view1)), dim=1)
    k = F.normalize(method.momentum_encoder(view2), dim=1)
    logits = torch.cat([torch.einsum("nc,nc->n", q, k)[:, None], q @ method.queue.T], dim=1) / method.temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def byol_loss(method, view1, view2):
    def online(view):
        return F.normalize(method.predictor(method.projector(method.backbone(view))), dim=1)

    def target(view):
        return F.normalize(method.momentum_encoder(view), dim=1)

    return ((online(view1) - target(view2)) ** 2).sum(1).mean() + ((online(view2) - target(view1)) ** 2).sum(1).mean()


def simsiam_loss(method, view1, view2):
    z1, z2 = method.projector(method.backbone(view1)), method.projector(method.backbone(view2))
    p1, p2 = method.predictor(z1), method.predictor(z2)
    return -0.5 * (F.cosine_similarity(p1, z2).mean() + F.cosine_similarity(p2, z1).mean())


def swav_loss(method, view1, view2):
    prototypes = F.normalize(method.prototypes.weight, dim=1)
    z1, z2 = F.normalize(method.projector(method.backbone(torch.cat([view1, view2]))), dim=1).chunk(2)
    scores1, scores2 = z1 @ prototypes.T, z2 @ prototypes.T
    eps, iterations = method.sinkhorn_epsilon, method.sinkhorn_iterations
    codes1 = torch.from_numpy(numpy_sinkhorn(scores1.detach().numpy(), eps, iterations)).float()
    codes2 = torch.from_numpy(numpy_sinkhorn(scores2.detach().numpy(), eps, iterations)).float()
    temperature = method.temperature
    loss1 = -(codes1 * F.log_softmax(scores2 / temperature, dim=1)).sum(1).mean()
    loss2 = -(codes2 * F.log_softmax(scores1 / temperature, dim=1)).sum(1).mean()
    return 0.5 * (loss1 + loss2)


def mocov3_loss(method, view1, view2):
    def contrast(query_view, key_view):
        q = F.normalize(method.predictor(method.projector(method.backbone(query_view))), dim=1)
        k = F.normalize(method.momentum_encoder(key_view), dim=1)
        loss = F.cross_entropy(q @ k.T / method.temperature, torch.arange(len(q)))
        return 2 * method.temperature * loss

    return contrast(view1, view2) + contrast(view2, view1)


USUAL_LOSS = {
    "simclr": simclr_loss,
    "mocov2": mocov2_loss,
    "byol": byol_loss,
    "simsiam": simsiam_loss,
    "swav": swav_loss,
    "mocov3": mocov3_loss,
}


@pytest.mark.parametrize("name", METHODS)
def test_unit_weighted_mean_is_the_usual_loss(name):
    method = tiny_method(name)
    view1, view2 = random_views(8, seed=1)
    with torch.no_grad():
        expected = USUAL_LOSS[name](method, view1, view2)  # before forward: MoCo v2 enqueues in forward
    per_sample = method(view1, view2)
    assert per_sample.shape == (8,)
    torch.testing.assert_close((torch.ones(8) * per_sample).mean(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["byol", "simsiam"])
def test_zero_weight_removes_a_sample(name):
    # In eval mode BN uses running statistics, so nothing couples the samples of a batch in these two methods.
    method = tiny_method(name).eval()
    view1, view2 = (v.requires_grad_() for v in random_views(6, seed=2))
    weights = torch.tensor([1.0, 2.0, 0.0, 1.0, 0.5, 1.0])
    (weights * method(view1, view2)).mean().backward()
    assert view1.grad[2].abs().max() == 0 and view2.grad[2].abs().max() == 0
    assert view1.grad[[0, 1, 3, 4, 5]].abs().amax(dim=(1, 2, 3)).min() > 0


@pytest.mark.parametrize("name", METHODS)
def test_training_lowers_the_loss(name):
    torch.manual_seed(0)
    images = torch.rand(64, *IMAGE_SHAPE)
    method = tiny_method(name)
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        view1 = images + 0.1 * torch.randn_like(images)
        view2 = images + 0.1 * torch.randn_like(images)
        loss = method(view1, view2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if method.uses_momentum:
            method.momentum_update(0.99)
        losses.append(loss.item())
    # Averages over five steps: BYOL and SimSiam losses are not monotone.
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses


# --- momentum encoders, queues, prototypes --------------------------------------------------------------------------


@pytest.mark.parametrize("name", MOMENTUM_METHODS)
def test_momentum_update(name):
    method = tiny_method(name)
    assert method.uses_momentum
    assert not any(p.requires_grad for p in method.momentum_encoder.parameters())
    with torch.no_grad():
        for parameter in method.projector.parameters():
            parameter.add_(1.0)
    online = [p.clone() for m in (method.backbone, method.projector) for p in m.parameters()]
    before = [p.clone() for p in method.momentum_encoder.parameters()]
    method.momentum_update(1.0)
    for kept, now in zip(before, method.momentum_encoder.parameters()):
        torch.testing.assert_close(now, kept)
    method.momentum_update(0.0)
    for copied, now in zip(online, method.momentum_encoder.parameters()):
        torch.testing.assert_close(now, copied)


@pytest.mark.parametrize("name", ["simclr", "simsiam", "swav"])
def test_methods_without_momentum_encoder(name):
    method = tiny_method(name)
    assert not method.uses_momentum and not hasattr(method, "momentum_encoder")


def test_mocov2_queue_wraps_around():
    method = tiny_method("mocov2", queue_size=12)
    first, second = random_views(8, seed=3), random_views(8, seed=4)
    method(*first)
    assert method.queue_ptr.item() == 8
    method(*second)
    assert method.queue_ptr.item() == 4
    with torch.no_grad():
        keys = F.normalize(method.momentum_encoder(second[1]), dim=1)
    torch.testing.assert_close(method.queue[[8, 9, 10, 11, 0, 1, 2, 3]], keys)


def test_mocov2_batch_larger_than_queue_keeps_newest_keys():
    method = tiny_method("mocov2", queue_size=4)
    view1, view2 = random_views(6, seed=5)
    method(view1, view2)
    with torch.no_grad():
        keys = F.normalize(method.momentum_encoder(view2), dim=1)
    assert method.queue_ptr.item() == 0
    torch.testing.assert_close(method.queue, keys[2:])


def test_checkpoint_holds_momentum_encoders_and_queues():
    for name in MOMENTUM_METHODS:
        assert any(key.startswith("momentum_encoder.") for key in tiny_method(name).state_dict())
    state = tiny_method("mocov2").state_dict()
    assert state["queue"].shape == (128, 16) and "queue_ptr" in state
    restored = tiny_method("mocov2", seed=1)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.queue, state["queue"])
    assert {"queue", "queue_count"} <= set(tiny_method("swav", queue_size=16).state_dict())


def test_swav_prototypes_are_normalised_and_queue_joins_when_full():
    method = tiny_method("swav", queue_size=16)
    method(*random_views(8, seed=6))
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(10))
    assert method.queue_count.item() == 8
    view1, view2 = random_views(8, seed=7)
    method(view1, view2)
    assert method.queue_count.item() == 16
    with torch.no_grad():
        embeddings = F.normalize(method.projector(method.backbone(torch.cat([view1, view2]))), dim=1)
        scores = embeddings[:8] @ method.prototypes.weight.T
        queued = method.queue[0] @ method.prototypes.weight.T
    torch.testing.assert_close(method.queue[0, :8], embeddings[:8])
    torch.testing.assert_close(method.queue[1, :8], embeddings[8:])

    # Once full, the Sinkhorn batch is the 8 samples plus the 16 queued ones.
    expected = numpy_sinkhorn(torch.cat([scores, queued]).numpy(), 0.05, 3)[:8]
    codes = method._codes(scores, method.queue[0])
    torch.testing.assert_close(codes, torch.from_numpy(expected).float(), rtol=1e-4, atol=1e-6)


# --- registry -------------------------------------------------------------------------------------------------------


def test_registry_and_options():
    for name in METHODS:
        cls = method_class(name)
        assert cls.name == name and cls.kind == "two_view"
        method = build_method(name, tiny_backbone(), FEATURE_DIM, TINY_OPTIONS[name])
        assert method.options == {**cls.default_options, **TINY_OPTIONS[name]}
    with pytest.raises(ConfigError, match="unknown option"):
        build_method("simclr", tiny_backbone(), FEATURE_DIM, {"temprature": 0.2})
    with pytest.raises(ConfigError, match="unknown method"):
        method_class("simclr2")


def test_paper_defaults():
    assert method_class("simclr").default_options["temperature"] == 0.1
    mocov2 = method_class("mocov2").default_options
    assert (mocov2["temperature"], mocov2["queue_size"], mocov2["base_momentum"]) == (0.2, 65536, 0.999)
    byol = method_class("byol").default_options
    assert (byol["proj_hidden_dim"], byol["proj_dim"], byol["base_momentum"]) == (4096, 256, 0.996)
    simsiam = method_class("simsiam").default_options
    assert (simsiam["proj_dim"], simsiam["proj_layers"], simsiam["pred_hidden_dim"]) == (2048, 3, 512)
    swav = method_class("swav").default_options
    assert (
        swav["num_prototypes"],
        swav["temperature"],
        swav["sinkhorn_epsilon"],
        swav["sinkhorn_iterations"],
    ) == (
        3000,
        0.1,
        0.05,
        3,
    )
    mocov3 = method_class("mocov3").default_options
    assert (mocov3["temperature"], mocov3["proj_hidden_dim"], mocov3["base_momentum"]) == (0.2, 4096, 0.99)


# --- two processes (gloo) against one -------------------------------------------------------------------------------

WORLD_SIZE = 2
LOCAL_BATCH = 4
DISTRIBUTED_METHODS = ["simclr", "mocov3", "mocov2", "swav"]


def per_sample_losses_and_gradients(name: str, view1: torch.Tensor, view2: torch.Tensor):
    """Per-sample losses, the gradient of their mean, and the method (for its queue); in eval mode so that BN uses
    running statistics, which makes one process's outputs independent of how the batch is split."""
    method = tiny_method(name).eval()
    losses = method(view1, view2)
    losses.mean().backward()
    gradients = [p.grad.clone() for p in method.parameters() if p.grad is not None]
    return losses.detach(), gradients, method


def distributed_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        view1, view2 = random_views(WORLD_SIZE * LOCAL_BATCH, seed=8)
        local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        results = {}
        for name in DISTRIBUTED_METHODS:
            losses, gradients, method = per_sample_losses_and_gradients(name, view1[local], view2[local])
            results[name] = {
                "losses": losses,
                "gradients": gradients,
                "buffers": dict(method.named_buffers()),
            }
        torch.save(results, f"{out_dir}/rank{rank}.pt")
        # Gloo aborts a process whose peer tears its pairs down first (seen once under load in CI): leave together.
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    mp.spawn(distributed_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    view1, view2 = random_views(WORLD_SIZE * LOCAL_BATCH, seed=8)
    for name in DISTRIBUTED_METHODS:
        losses, gradients, method = per_sample_losses_and_gradients(name, view1, view2)
        for rank, result in enumerate(ranks):
            torch.testing.assert_close(result[name]["losses"], losses[rank * LOCAL_BATCH : (rank + 1) * LOCAL_BATCH])
        # DDP averages the ranks' gradients; that must be the gradient of the global mean loss.
        for index, gradient in enumerate(gradients):
            averaged = sum(result[name]["gradients"][index] for result in ranks) / WORLD_SIZE
            torch.testing.assert_close(averaged, gradient, rtol=1e-4, atol=1e-6)
        if name == "mocov2":  # every rank enqueued the global batch of keys
            for result in ranks:
                torch.testing.assert_close(result[name]["buffers"]["queue"], method.queue)
                assert result[name]["buffers"]["queue_ptr"].item() == WORLD_SIZE * LOCAL_BATCH


def test_swav_queue_fills_only_from_its_start_step():
    method = tiny_method("swav", queue_size=16, queue_start_iters=2)
    for step in range(2):
        method(*random_views(8, seed=step))
        assert method.queue_count.item() == 0
        method.before_optimizer_step(step)
    method(*random_views(8, seed=3))
    assert method.queue_count.item() == 8 and int(method.state_dict()["steps_done"]) == 2
