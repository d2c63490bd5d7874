"""Opacus's paths for `benchmarks/bench_peers.py` (runs in its own environment: Opacus on the
CPU build of PyTorch, see opacus-requirements.txt).

The seed CNN rebuilt in PyTorch (same layers, same parameter count as dptune's; Keras's
"same" padding of the first convolution is PyTorch's padding=3 at stride 2), SGD with learning
rate 0.25, one CPU thread; each call is one step, batch sampling included:
  nonprivate        plain `nn.Module`: B rows drawn without replacement by tensor indexing;
  hooks_poisson     `PrivacyEngine.make_private(grad_sample_mode="hooks", poisson_sampling=True)`:
                    per-example gradients by GradSampleModule's hooks, batches from Opacus's
                    Poisson `DPDataLoader` (rate B/N), as Opacus trains by default;
  ghost_poisson     the same with `grad_sample_mode="ghost"` (fast gradient clipping: ghost
                    norms for the Linear layers, per-example gradients' norms for the
                    convolutions, which have no ghost norm sampler in Opacus), with the
                    criterion Opacus returns for its two backward passes.
"""

from __future__ import annotations

from _protocol import redirect_stdout_to_stderr, serve, single_thread_environment, worker_arguments

single_thread_environment()

import numpy as np  # noqa: E402
import opacus  # noqa: E402
import torch  # noqa: E402
from opacus import PrivacyEngine  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

LEARNING_RATE = 0.25


def seed_cnn() -> nn.Module:
    """dptune's seed CNN (TF Privacy's MNIST tutorial CNN with ReLU), layer for layer, on
    channels-first 1x28x28 input."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 8, stride=2, padding=3), nn.ReLU(),
        nn.MaxPool2d(2, 1),
        nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(),
        nn.MaxPool2d(2, 1),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 32), nn.ReLU(),
        nn.Linear(32, 10),
    )


def endless(loader: DataLoader):
    """The loader's batches, one epoch after another."""
    while True:
        yield from loader


def main() -> None:
    args = worker_arguments(__doc__)
    redirect_stdout_to_stderr()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((args.n, 1, 28, 28), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, args.n).astype(np.int64))

    model = seed_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()

    def nonprivate():
        idx = torch.randperm(args.n)[: args.batch]
        optimizer.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        return loss.item()

    def private(mode: str):
        module = seed_cnn()
        made = PrivacyEngine().make_private(
            module=module, optimizer=torch.optim.SGD(module.parameters(), lr=LEARNING_RATE),
            data_loader=DataLoader(TensorDataset(x, y), batch_size=args.batch), criterion=nn.CrossEntropyLoss(),
            noise_multiplier=args.sigma, max_grad_norm=args.clip, poisson_sampling=True, grad_sample_mode=mode,
        )
        if mode == "ghost":
            dp_module, dp_optimizer, criterion, loader = made
        else:
            (dp_module, dp_optimizer, loader), criterion = made, loss_fn
        batches = endless(loader)

        def step():
            xb, yb = next(batches)
            dp_optimizer.zero_grad()
            loss = criterion(dp_module(xb), yb)
            loss.backward()
            dp_optimizer.step()
            return loss.item()

        return step

    paths = {"nonprivate": nonprivate, "hooks_poisson": private("hooks"), "ghost_poisson": private("ghost")}
    info = {
        "framework": f"Opacus {opacus.__version__}, PyTorch {torch.__version__}",
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    serve(paths, info, args.warmup)


if __name__ == "__main__":
    main()
