#!/usr/bin/python3
# The Python peer of vdm's training step: the same U-Net, objective, AdamW, clipping and EMA as
# `vdm train` for one preset, written as a competent PyTorch user would (DistributedDataParallel
# with its defaults over gloo, zero_grad(set_to_none=True)), run with Debian's python3-torch, which
# is the same LibTorch 1.13 that vdm links. Launched by bench/run_peer.sh, under `mpirun -np N`.
#
# It prints one line "peer: <img/s> img/s ..." over the steps after the warm-up, and the model's
# parameter count, which run_peer.sh checks against `vdm inspect model`.
import argparse
import gzip
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

# ---- the presets (models/model_presets.cpp) and their training recipes (configs/*.yaml) ----------
PRESETS = {
    "quickstart": dict(
        arch="adm", channels=1, resolution=16, base=32, mult=[1, 2, 2], blocks=1, attention=[4], heads=2,
        dropout=0.1, objective="weighted_sigmoid", bias=2.0, schedule="cosine", batch=64, lr=1e-3,
        beta2=0.99, weight_decay=0.0, ema=0.999, data="fashion_mnist"),
    "cifar10_vdm": dict(
        arch="vdm", channels=3, resolution=32, base=128, blocks=32, heads=1, dropout=0.1,
        fourier=(6, 7), objective="vlb", schedule="learned", batch=16, lr=2e-4, beta2=0.99,
        weight_decay=0.01, ema=0.9999, data="random"),
}
GAMMA_MIN, GAMMA_MAX = -13.3, 5.0


def norm_groups(c):
    return next(g for g in range(32, 0, -1) if c % g == 0)


def group_norm(c):
    return nn.GroupNorm(norm_groups(c), c, eps=1e-6)


def zeroed(m):
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class NoiseEmbedding(nn.Module):
    def __init__(self, features, dim, max_frequency=1000.0):
        super().__init__()
        self.register_buffer("frequencies", torch.exp(torch.linspace(0.0, math.log(max_frequency), features // 2)))
        self.fc1 = nn.Linear(features // 2 * 2, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, c_noise):
        arg = c_noise.float().reshape(-1, 1) * self.frequencies[None]
        return self.fc2(F.silu(self.fc1(torch.cat([torch.sin(arg), torch.cos(arg)], 1))))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, dropout, scale_shift):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * cout if scale_shift else cout)
        self.norm2, self.drop = group_norm(cout), nn.Dropout(dropout)
        self.conv2 = zeroed(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb_proj(F.silu(emb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, 1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.drop(F.silu(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = zeroed(nn.Conv2d(c, c, 1))

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v
        return x + self.proj(a.transpose(-1, -2).reshape(B, C, H, W))


class LevelBlock(nn.Module):
    def __init__(self, res, attn):
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, x, emb):
        h = self.res(x, emb)
        return self.attn(h) if self.attn is not None else h


class Head(nn.Module):
    def __init__(self, c, cout):
        super().__init__()
        self.norm, self.conv = group_norm(c), zeroed(nn.Conv2d(c, cout, 3, padding=1))

    def forward(self, x):
        return self.conv(F.silu(self.norm(x)))


class AdmUNet(nn.Module):
    """models/unet.cpp: ADM U-Net with scale-shift norm."""

    def __init__(self, p):
        super().__init__()
        base, C, R = p["base"], p["channels"], p["resolution"]
        emb_dim = 4 * base
        block = lambda i, o, r: LevelBlock(ResBlock(i, o, emb_dim, p["dropout"], True),
                                           Attention(o, p["heads"]) if r in p["attention"] else None)
        self.noise = NoiseEmbedding(base, emb_dim)
        self.conv_in = nn.Conv2d(C, base, 3, padding=1)
        self.down, self.kinds_down, skips, ch, res = nn.ModuleList(), [], [base], base, R
        for level, m in enumerate(p["mult"]):
            for _ in range(p["blocks"]):
                self.down.append(block(ch, base * m, res))
                self.kinds_down.append("res")
                ch = base * m
                skips.append(ch)
            if level + 1 < len(p["mult"]):
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                self.kinds_down.append("down")
                res //= 2
                skips.append(ch)
        self.mid = nn.ModuleList([block(ch, ch, -1), Attention(ch, p["heads"]), block(ch, ch, -1)])
        self.up, self.kinds_up = nn.ModuleList(), []
        for level in reversed(range(len(p["mult"]))):
            for _ in range(p["blocks"] + 1):
                out = base * p["mult"][level]
                self.up.append(block(ch + skips.pop(), out, res))
                self.kinds_up.append("res")
                ch = out
            if level > 0:
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1))
                self.kinds_up.append("up")
                res *= 2
        self.head = Head(ch, C)

    def forward(self, x, c_noise):
        emb = self.noise(c_noise)
        h = self.conv_in(x)
        skips = [h]
        for kind, m in zip(self.kinds_down, self.down):
            h = m(h) if kind == "down" else m(h, emb)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for kind, m in zip(self.kinds_up, self.up):
            h = m(F.interpolate(h, scale_factor=2.0, mode="nearest")) if kind == "up" else m(torch.cat([h, skips.pop()], 1), emb)
        return self.head(h)


class VdmUNet(nn.Module):
    """models/vdm_unet.cpp: no downsampling, input Fourier features, output skip."""

    def __init__(self, p):
        super().__init__()
        ch, C = p["base"], p["channels"]
        self.fourier = p["fourier"]
        c_in = C * (1 + 2 * (self.fourier[1] - self.fourier[0] + 1))
        block = lambda i: ResBlock(i, ch, 4 * ch, p["dropout"], False)
        self.noise = NoiseEmbedding(ch, 4 * ch)
        self.conv_in = nn.Conv2d(c_in, ch, 3, padding=1)
        self.down = nn.ModuleList([block(ch) for _ in range(p["blocks"])])
        self.mid = nn.ModuleList([block(ch), Attention(ch, p["heads"]), block(ch)])
        self.up = nn.ModuleList([block(2 * ch) for _ in range(p["blocks"] + 1)])
        self.head = Head(ch, C)

    def forward(self, x, c_noise):
        emb = self.noise(c_noise)
        parts = [x]
        for n in range(self.fourier[0], self.fourier[1] + 1):
            arg = x * (2.0 ** n * 2.0 * math.pi)
            parts += [torch.sin(arg), torch.cos(arg)]
        h = self.conv_in(torch.cat(parts, 1))
        skips = [h]
        for m in self.down:
            h = m(h, emb)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for m in self.up:
            h = m(torch.cat([h, skips.pop()], 1), emb)
        return x + self.head(h)


# ---- noise schedules and objectives (objectives/*.cpp), in float64 --------------------------------
class CosineSchedule(nn.Module):
    def __init__(self):
        super().__init__()
        self.u0, self.u1 = math.atan(math.exp(GAMMA_MIN / 2)), math.atan(math.exp(GAMMA_MAX / 2))

    def forward(self, t):
        u = self.u0 + t * (self.u1 - self.u0)
        return 2 * torch.log(torch.tan(u)), 4 * (self.u1 - self.u0) / torch.sin(2 * u), None, None


class LearnedSchedule(nn.Module):
    """VDM's monotone network (Kingma et al. 2021) with learned endpoints."""

    def __init__(self, hidden=1024):
        super().__init__()
        d = torch.float64
        g = torch.Generator().manual_seed(0x5eed)
        self.gamma_0 = nn.Parameter(torch.tensor(GAMMA_MIN, dtype=d))
        self.gamma_1 = nn.Parameter(torch.tensor(GAMMA_MAX, dtype=d))
        self.w1 = nn.Parameter(torch.full((1, 1), GAMMA_MAX - GAMMA_MIN, dtype=d))
        self.b1 = nn.Parameter(torch.full((1,), GAMMA_MIN, dtype=d))
        self.w2 = nn.Parameter(torch.randn(hidden, 1, generator=g, dtype=d))
        self.b2 = nn.Parameter(torch.zeros(hidden, dtype=d))
        self.w3 = nn.Parameter(torch.randn(1, hidden, generator=g, dtype=d))
        self.hidden = hidden

    def net(self, t):
        h = 2 * torch.sigmoid(F.linear(2 * t - 1, self.w2.abs(), self.b2)) - 1
        return F.linear(t, self.w1.abs(), self.b1) + F.linear(h, self.w3.abs()) / self.hidden

    def forward(self, t):
        with torch.enable_grad():
            tt = t.detach().reshape(-1, 1).requires_grad_(True)
            ends = self.net(torch.tensor([[0.0], [1.0]], dtype=torch.float64))
            interior = (self.net(tt) - ends[0]) / (ends[1] - ends[0])
            rate = torch.autograd.grad(interior.sum(), tt, create_graph=True)[0]
        interior, rate = interior.reshape(t.shape), rate.reshape(t.shape)
        span = self.gamma_1 - self.gamma_0
        return self.gamma_0 + span * interior, span * rate, interior, rate


def reconstruction_nll(x, z0, gamma_0, vocab=256):
    """-log p(x|z_0) of the discretised decoder, summed over a window of grid values around z_0."""
    g = gamma_0.double()
    rescaled = z0.double() / torch.sqrt(torch.sigmoid(-g))
    inv_var, step = torch.exp(-g), 2.0 / vocab
    index = lambda v: torch.round((v + 1) * vocab / 2 - 0.5).clamp(0, vocab - 1)
    value = lambda i: (i + 0.5) * step - 1
    own = -0.5 * inv_var * (rescaled - value(index(x.double()))) ** 2
    half = int(math.ceil(math.sqrt(120.0) * math.exp(0.5 * g.max().item()) / step + 0.5)) + 1
    cand = index(rescaled).unsqueeze(-1) + torch.arange(-half, half + 1, dtype=torch.float64)
    logits = -0.5 * inv_var * (rescaled.unsqueeze(-1) - value(cand)) ** 2
    logits = logits.masked_fill((cand < 0) | (cand > vocab - 1), -math.inf)
    return torch.logsumexp(logits, -1) - own


class Objective(nn.Module):
    def __init__(self, p, world, rank):
        super().__init__()
        self.p, self.world, self.rank = p, world, rank
        self.schedule = LearnedSchedule() if p["schedule"] == "learned" else CosineSchedule()

    def forward(self, net, x, gen):
        B, D = x.shape[0], x[0].numel()
        # Antithetic t: one shared offset, ranks interleaved on a lattice of spacing 1/(B world).
        u0 = torch.rand((), generator=gen, dtype=torch.float64).item()
        t = torch.fmod(u0 + (torch.arange(B, dtype=torch.float64) * self.world + self.rank) / (B * self.world), 1.0)
        gamma, dgamma, interior, rate = self.schedule(t)
        alpha = torch.sqrt(torch.sigmoid(-gamma)).float().view(B, 1, 1, 1)
        sigma = torch.sqrt(torch.sigmoid(gamma)).float().view(B, 1, 1, 1)
        eps = torch.randn_like(x)
        eps_hat = net(alpha * x + sigma * eps, (gamma / 8).float())
        mse = ((eps_hat - eps) ** 2).flatten(1).sum(1).double()
        if self.p["objective"] == "weighted_sigmoid":
            lam = (-gamma).detach()
            return (0.5 * torch.sigmoid(self.p["bias"] - lam) * dgamma.detach() * mse).mean() / D
        diffusion = 0.5 * dgamma * mse
        if diffusion.requires_grad:  # variance minimisation (VDM App. I.2), as objectives/vlb.cpp
            scale = 2 * diffusion.detach() / D
            for v in (interior, rate):
                v.register_hook(lambda g: g * scale.view(g.shape))
        f64 = torch.float64
        g1 = self.schedule(torch.ones(1, dtype=f64))[0]
        g0 = self.schedule(torch.zeros(1, dtype=f64))[0]
        x64 = x.double()
        prior = (0.5 * (torch.sigmoid(-g1) * (x64 * x64 - 1) + F.softplus(-g1))).flatten(1).sum(1)
        z0 = torch.sqrt(torch.sigmoid(-g0)) * x64 + torch.sqrt(torch.sigmoid(g0)) * torch.randn_like(x64)
        recon = reconstruction_nll(x, z0, g0).flatten(1).sum(1)
        return (diffusion + prior + recon).mean() / D


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        _, n, h, w = struct.unpack(">IIII", f.read(16))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(n, 1, h, w)


def load_images(p, n_random=1024):
    """The training images as uint8 [N, C, R, R] in memory, resized once (a small dataset)."""
    if p["data"] == "fashion_mnist":
        imgs = torch.from_numpy(read_idx_images("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").copy())
        r = p["resolution"]
        small = F.interpolate(imgs.float(), size=(r, r), mode="bilinear", antialias=True, align_corners=False)
        return small.round().clamp(0, 255).to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n_random, p["channels"], p["resolution"], p["resolution"]), generator=g, dtype=torch.uint8)


def ema_decay(step, decay, inv_gamma=1.0, power=2.0 / 3.0):
    return min(decay, max(0.0, 1.0 - (1.0 + step / inv_gamma) ** -power))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("preset", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the throughput")
    ap.add_argument("--batch-size", type=int, default=0, help="per rank; 0: the preset's")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--count-parameters", action="store_true")
    a = ap.parse_args()
    p = dict(PRESETS[a.preset])
    if a.batch_size:
        p["batch"] = a.batch_size
    torch.set_num_threads(a.threads)
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", 1))
    torch.manual_seed(0)
    model = AdmUNet(p) if p["arch"] == "adm" else VdmUNet(p)
    if a.count_parameters:
        print(sum(q.numel() for q in model.parameters()))
        return
    objective = Objective(p, world, rank)
    if world > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        dist.init_process_group("gloo", rank=rank, world_size=world)
        ddp = nn.parallel.DistributedDataParallel(model)
        if any(True for _ in objective.parameters()):
            objective = nn.parallel.DistributedDataParallel(objective)
    else:
        ddp = model
    params = list(model.parameters()) + list(objective.parameters())
    opt = torch.optim.AdamW(params, lr=p["lr"], betas=(0.9, p["beta2"]), eps=1e-8, weight_decay=p["weight_decay"])
    ema = [q.detach().clone() for q in model.parameters()]
    images = load_images(p)
    gen = torch.Generator().manual_seed(1234)  # shared by the ranks: the antithetic offset
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(rank))
    B, cursor = p["batch"], 0
    if rank == 0:
        print(f"peer: {a.preset}, {world} rank(s) x {a.threads} thread(s), batch {B} per rank, "
              f"{sum(q.numel() for q in model.parameters())} parameters", flush=True)
    for step in range(a.steps):
        if step == a.warmup:
            if world > 1:
                dist.barrier()
            t0 = time.perf_counter()
        if cursor + B > order.numel():
            cursor = 0
        batch = images[order[cursor:cursor + B]]
        cursor += B
        flip = torch.rand(B) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        x = 2 * (batch.float() + 0.5) / 256 - 1
        opt.zero_grad(set_to_none=True)
        loss = objective(ddp, x, gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            d = ema_decay(step + 1, p["ema"])
            for e, q in zip(ema, model.parameters()):
                e.mul_(d).add_(q, alpha=1 - d)
        loss_value = loss.item()  # what a training loop logs
    if world > 1:
        dist.barrier()
    elapsed = time.perf_counter() - t0
    if rank == 0:
        measured = a.steps - a.warmup
        print(f"peer: {measured * B * world / elapsed:.4g} img/s over {measured} steps "
              f"({elapsed / measured:.3f} s/step, last loss {loss_value:.4f})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
