"""The same networks in PyTorch, for side-by-side timing (imported only when torch exists)."""

from __future__ import annotations


def build(preset: str, threads: int):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    head = [nn.Sigmoid()] if preset == "article" else [nn.ReLU(), nn.Dropout(0.5)]
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.MaxPool2d(2, 2),
        nn.ReLU(),
        nn.Conv2d(20, 50, 5),
        nn.MaxPool2d(2, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(800, 500),
        *head,
        nn.Linear(500, 10),
    )


class TorchRunner:
    """Training step and inference for a torch model, mirroring bench.run's NumPy runner."""

    def __init__(self, preset: str, threads: int, lr: float = 0.005) -> None:
        import torch

        self.torch = torch
        self.model = build(preset, threads)
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
