"""The same networks in PyTorch, for side-by-side timing (imported only when torch exists)."""

from __future__ import annotations

from bench.networks import EXAMPLE


def build(network: str, threads: int, order: str = "preset"):
    """The network of ``bench.networks`` of that name in PyTorch, ``order`` as there."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    if network == "resnet":
        return resnet()
    if network == EXAMPLE:
        return pytorch_example()
    head = [nn.Sigmoid()] if network == "article" else [nn.ReLU(), nn.Dropout(0.5)]

    def stage(conv):
        pool_relu = [nn.MaxPool2d(2, 2), nn.ReLU()]
        return [conv, *(pool_relu if order == "preset" else pool_relu[::-1])]

    return nn.Sequential(
        *stage(nn.Conv2d(1, 20, 5)),
        *stage(nn.Conv2d(20, 50, 5)),
        nn.Flatten(),
        nn.Linear(800, 500),
        *head,
        nn.Linear(500, 10),
    )


def pytorch_example():
    """pytorch/examples' mnist/main.py network, as an ``nn.Sequential``."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    )  # fmt: skip


def resnet():
    """faltung's resnet preset: a 3x3 stem and one basic block at each of its widths."""
    from torch import nn

    from faltung.presets import RESNET_WIDTHS

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
            )  # fmt: skip
            self.shortcut = nn.Identity()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    first, second, third = RESNET_WIDTHS
    stem = [nn.Conv2d(1, first, 3, 1, 1, bias=False), nn.BatchNorm2d(first), nn.ReLU()]
    stages = [(first, first, 1), (first, second, 2), (second, third, 2)]
    blocks = [m for cin, cout, s in stages for m in (Block(cin, cout, s), nn.ReLU())]
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(third, 10)]
    return nn.Sequential(*stem, *blocks, *head)


class TorchRunner:
    """Training step and inference for a torch model, mirroring bench.run's NumPy runner."""

    def __init__(
        self, network: str, threads: int, lr: float = 0.005, order: str = "preset"
    ) -> None:
        import torch

        self.torch = torch
        self.model = build(network, threads, order)
        self.loss = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, weight_decay=1e-4)

    def train_step(self, images, labels) -> None:
        torch = self.torch
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()

    def infer(self, images) -> None:
        torch = self.torch
        self.model.eval()
        with torch.inference_mode():
            self.model(torch.from_numpy(images))
