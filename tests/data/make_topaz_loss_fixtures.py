"""Regenerates ``tests/data/topaz_losses.npz``: Topaz's training objectives and generator.

Run with a Python environment that has Topaz and torch installed (jaxpick is not needed), from
the repository root::

    /path/to/topaz-venv/bin/python tests/data/make_topaz_loss_fixtures.py

Produced with topaz-em 0.3.20 and torch 2.13 (CPU). ``tests/losses/test_pu.py`` and
``tests/models/test_generator.py`` compare jaxpick with this file, so the tests never need torch.

Contents:

* loss cases, listed in ``cases`` (a string array). For each case ``c``: ``c/method`` (``PN``,
  ``GE-binomial``, ``GE-KL``, ``PU``), ``c/pi`` (the value passed to Topaz's method class, i.e.
  pi' for the GE methods), ``c/slack``, ``c/logits`` float32 ``[B]``, ``c/labels`` int32
  ``[B]``, ``c/reported`` (what ``step()`` returns, in order: loss, [ge_penalty,] precision,
  tpr, fpr; NaN where torch gives NaN) and ``c/grad`` (d loss / d logits from ``step()``'s
  backward, which is the gradient of the objective jaxpick differentiates). Each case runs one
  ``topaz.methods`` step on a stand-in model whose output is a parameter vector of logits,
  with an optimiser that neither steps nor clears the gradient.

* ``deconv{i}/{x, weight, out}`` with ``deconv{i}/{stride, padding}``: ``torch.nn.ConvTranspose2d``
  (no bias) on random NCHW input (``x`` and ``out`` stored NHWC, ``weight`` as torch's
  ``[in, out, k, k]``).

* ``generator/*``: a ``topaz.model.generative.ConvGenerator(nin=6, units=4, depth=1)`` with
  random weights and BN parameters/statistics: ``generator/state/{torch key}`` its state dict,
  ``generator/z`` ``[3, 6]`` latent vectors, ``generator/out_eval`` (eval mode),
  ``generator/out_train`` (train mode, batch statistics) and ``generator/state_after/{key}``
  the running statistics after that training-mode pass; ``generator/params_resnet8_u32`` the
  parameter count of ``ConvGenerator(128, units=32, depth=3)`` (resnet8's generator).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from topaz import methods
from topaz.model.generative import ConvGenerator
from torch import nn

OUT = Path(__file__).resolve().parent / "topaz_losses.npz"


class _Logits(nn.Module):
    """A stand-in classifier whose output is its parameter: the logits themselves."""

    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.from_numpy(logits.astype(np.float32)))

    def forward(self, x: object) -> torch.Tensor:
        return self.w


class _KeepGrad:
    """An optimiser that keeps the gradient (Topaz calls ``step`` then ``zero_grad``)."""

    def step(self) -> None:
        pass

    def zero_grad(self) -> None:
        pass


def run_method(method: str, logits: np.ndarray, labels: np.ndarray, pi: float, slack: float):
    model = _Logits(logits)
    crit = nn.BCEWithLogitsLoss()
    opt = _KeepGrad()
    if method == "PN":
        trainer = methods.PN(model, opt, crit, pi=pi)
    elif method == "GE-binomial":
        trainer = methods.GE_binomial(model, opt, crit, pi, slack=slack)
    elif method == "GE-KL":
        trainer = methods.GE_KL(model, opt, crit, pi, slack=slack)
    elif method == "PU":
        trainer = methods.PU(model, opt, crit, pi)
    else:
        raise ValueError(method)
    y = torch.from_numpy(labels.astype(np.float32))
    reported = np.asarray(trainer.step(None, y), np.float64)
    grad = model.w.grad
    grad = np.zeros_like(logits) if grad is None else grad.numpy()
    return reported, grad.astype(np.float32)


def loss_cases(
    rng: np.random.Generator,
) -> dict[str, tuple[str, float, float, np.ndarray, np.ndarray]]:
    cases: dict[str, tuple[str, float, float, np.ndarray, np.ndarray]] = {}
    ref_logits = np.linspace(-3, 1, 18).astype(np.float32)
    ref_labels = np.zeros(18, np.int32)
    ref_labels[[5, 17]] = 1
    for method, slack in [("PN", 1.0), ("GE-binomial", 1.0), ("GE-KL", 10.0), ("PU", 1.0)]:
        cases[f"spec_{method}"] = (method, 0.05, slack, ref_logits, ref_labels)

    def random_batch(b: int, n_pos: int, scale: float = 2.0, shift: float = -1.0):
        logits = (rng.normal(size=b) * scale + shift).astype(np.float32)
        labels = np.zeros(b, np.int32)
        labels[rng.choice(b, n_pos, replace=False)] = 1
        return logits, labels

    for b, n_pos in [(16, 3), (64, 4), (256, 16)]:
        logits, labels = random_batch(b, n_pos)
        cases[f"b{b}_PN"] = ("PN", 0.1, 1.0, logits, labels)
        cases[f"b{b}_GE-binomial_slack1"] = ("GE-binomial", 0.03, 1.0, logits, labels)
        cases[f"b{b}_GE-binomial_slack2.5"] = ("GE-binomial", 0.07, 2.5, logits, labels)
        cases[f"b{b}_GE-KL_slack10"] = ("GE-KL", 0.03, 10.0, logits, labels)
        cases[f"b{b}_GE-KL_slack0.5"] = ("GE-KL", 0.2, 0.5, logits, labels)
        cases[f"b{b}_PU"] = ("PU", 0.05, 1.0, logits, labels)
    # nnPU's clipped branch (L_u < 0): confident positives, very negative unlabelled scores.
    logits = np.concatenate([rng.normal(size=4) + 4, rng.normal(size=28) - 6]).astype(np.float32)
    labels = np.zeros(32, np.int32)
    labels[:4] = 1
    cases["PU_clipped"] = ("PU", 0.3, 1.0, logits, labels)
    # Saturated unlabelled scores (GE-binomial variance ~ 0, GE-KL mean close to 0).
    logits = np.concatenate([[3.0, 2.0], np.full(14, -30.0), [-20.0, -25.0]]).astype(np.float32)
    labels = np.zeros(18, np.int32)
    labels[:2] = 1
    for method, slack in [("GE-binomial", 1.0), ("GE-KL", 10.0)]:
        cases[f"saturated_{method}"] = (method, 0.05, slack, logits, labels)
    # Batches without positives and without unlabelled samples.
    logits, _ = random_batch(12, 0)
    for method, slack in [("PN", 1.0), ("GE-binomial", 1.0), ("GE-KL", 10.0), ("PU", 1.0)]:
        cases[f"nopos_{method}"] = (method, 0.1, slack, logits, np.zeros(12, np.int32))
        cases[f"allpos_{method}"] = (method, 0.1, slack, logits, np.ones(12, np.int32))
    return cases


def deconv_cases(rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    settings = [(4, 1, 0, 1, 1), (4, 2, 1, 3, 5), (3, 2, 1, 4, 3), (3, 1, 1, 5, 4), (5, 3, 2, 2, 3)]
    for i, (k, stride, padding, h, w) in enumerate(settings):
        layer = nn.ConvTranspose2d(3, 2, k, stride, padding, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(rng.normal(size=(3, 2, k, k)).astype(np.float32)))
        x = rng.normal(size=(2, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            y = layer(torch.from_numpy(x)).numpy()
        out[f"deconv{i}/x"] = x.transpose(0, 2, 3, 1)
        out[f"deconv{i}/weight"] = layer.weight.detach().numpy()
        out[f"deconv{i}/out"] = y.transpose(0, 2, 3, 1)
        out[f"deconv{i}/stride"] = np.array(stride)
        out[f"deconv{i}/padding"] = np.array(padding)
    return out


def generator_case(rng: np.random.Generator) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    gen = ConvGenerator(6, units=4, depth=1)
    with torch.no_grad():
        for name, tensor in gen.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var") or (name.endswith("weight") and tensor.ndim == 1):
                tensor.copy_(
                    torch.from_numpy(rng.uniform(0.5, 1.5, tensor.shape).astype(np.float32))
                )
            elif tensor.ndim == 1:
                tensor.copy_(torch.from_numpy(rng.normal(0, 0.3, tensor.shape).astype(np.float32)))
    out = {f"generator/state/{k}": v.numpy().copy() for k, v in gen.state_dict().items()}
    z = rng.normal(size=(3, 6)).astype(np.float32)
    gen.eval()
    with torch.no_grad():
        out["generator/out_eval"] = gen(torch.from_numpy(z)).numpy()[:, 0]
    gen.train()
    with torch.no_grad():
        out["generator/out_train"] = gen(torch.from_numpy(z)).numpy()[:, 0]
    for k, v in gen.state_dict().items():
        if "running" in k:
            out[f"generator/state_after/{k}"] = v.numpy().copy()
    out["generator/z"] = z
    out["generator/width"] = np.array(gen.width)
    # Parameter count of the generator ``topaz train --autoencoder`` attaches to a resnet8 (u=32).
    full = ConvGenerator(128, units=32, depth=3)
    out["generator/params_resnet8_u32"] = np.array(sum(p.numel() for p in full.parameters()))
    return out


def main() -> None:
    rng = np.random.default_rng(20240605)
    arrays: dict[str, np.ndarray] = {}
    cases = loss_cases(rng)
    for name, (method, pi, slack, logits, labels) in cases.items():
        reported, grad = run_method(method, logits, labels, pi, slack)
        arrays[f"{name}/method"] = np.array(method)
        arrays[f"{name}/pi"] = np.array(pi)
        arrays[f"{name}/slack"] = np.array(slack)
        arrays[f"{name}/logits"] = logits
        arrays[f"{name}/labels"] = labels
        arrays[f"{name}/reported"] = reported
        arrays[f"{name}/grad"] = grad
    arrays["cases"] = np.array(list(cases))
    arrays.update(deconv_cases(rng))
    arrays.update(generator_case(rng))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} loss cases)")


if __name__ == "__main__":
    main()
