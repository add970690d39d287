"""Soak: many epochs with a resume in the middle; resident memory must not creep up."""

from __future__ import annotations

import os

import numpy as np

from faltung.train import Callback

from .test_trainer import make_trainer


def resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class MemoryProbe(Callback):
    def __init__(self):
        self.samples = []

    def on_epoch_end(self, trainer, epoch, row):
        self.samples.append(resident_mib())


def test_many_epochs_with_resume_do_not_grow_memory(tmp_path):
    if not os.path.exists("/proc/self/statm"):
        import pytest

        pytest.skip("needs /proc to read the resident set")
    first_probe, second_probe = MemoryProbe(), MemoryProbe()
    trainer = make_trainer(tmp_path, epochs=15, callbacks=[first_probe])
    trainer.epochs = 8
    trainer.fit()
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    resumed = make_trainer(tmp_path, epochs=15, callbacks=[second_probe])
    resumed.load_checkpoint(tmp_path / "ckpt.npz")
    history = resumed.fit()
    assert len(history) == 15 and np.isfinite(history.last["loss"])
    samples = first_probe.samples[2:] + second_probe.samples
    # After warm-up, memory may wobble with the allocator but must not climb epoch after epoch.
    assert max(samples) - samples[0] < 25, samples
