"""The same networks in PyTorch, for side-by-side timing (imported only when torch exists)."""

from __future__ import annotations


def build(preset: str, threads: int, order: str = "preset"):
    """The preset's network in PyTorch; ``order`` as in ``bench.networks``."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    head = [nn.Sigmoid()] if preset == "article" else [nn.ReLU(), nn.Dropout(0.5)]

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


class TorchRunner:
    """Training step and inference for a torch model, mirroring bench.run's NumPy runner."""

    def __init__(self, preset: str, threads: int, lr: float = 0.005, order: str = "preset") -> None:
        import torch

        self.torch = torch
        self.model = build(preset, threads, order)
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
