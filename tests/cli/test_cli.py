"""The command line as a user meets it: outputs, reports and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from faltung import parallel
from faltung.cli import build_parser, main
from faltung.io import load_model

SMALL = ["--epochs", "2", "--batch-size", "20", "--train-size", "200", "--test-size", "50"]


def train(out, data, *extra):
    return main(
        ["train", "--preset", "lenet", "--data", str(data), "--out", str(out), *SMALL, *extra]
    )


def test_summary_prints_layers_and_flops(capsys):
    assert main(["summary", "--preset", "article"]) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "(N, 50, 8, 8)" in out and "Total parameters: 431,080" in out
    assert "forward FLOPs per image: 4.59 M" in out and "13.18 M" in out


def test_train_writes_every_result(tmp_path, synthetic_dir, capsys):
    out = tmp_path / "run"
    assert train(out, synthetic_dir) == 0
    printed = capsys.readouterr().out
    assert "epoch   1/2" in printed and "epoch   2/2" in printed and "final loss" in printed
    names = [
        "model.npz",
        "checkpoint.npz",
        "history.json",
        "history.csv",
        "metrics.json",
        "loss.png",
        "accuracy.png",
        "confusion.png",
        "layers.png",
    ]
    for name in names:
        assert (out / name).is_file(), name
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert f"wrote 9 files to {out}: {', '.join(names)}\n" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test_images"] == 50
    assert 0 <= metrics["full_test_accuracy"] <= 1 and len(metrics["confusion_matrix"]) == 10
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    _, meta = load_model(out / "model.npz")
    assert meta.preset == "lenet" and meta.input_shape == (1, 28, 28)


def test_rerun_refuses_to_overwrite_and_resume_extends(tmp_path, synthetic_dir, capsys):
    out = tmp_path / "run"
    train(out, synthetic_dir)
    before = (out / "model.npz").read_bytes()
    capsys.readouterr()
    assert train(out, synthetic_dir) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run" in err and "--resume" in err
    assert (out / "model.npz").read_bytes() == before
    assert train(out, synthetic_dir, "--resume", "--lr", "0.5") == 2
    assert "these flags differ: --lr 0.5" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--preset",
                "lenet",
                "--data",
                str(synthetic_dir),
                "--out",
                str(out),
                "--resume",
                "--epochs",
                "3",
            ]
        )
        == 0
    )
    assert "resuming at epoch 3, step 0" in capsys.readouterr().out
    assert len(json.loads((out / "history.json").read_text())) == 3
    assert train(out, synthetic_dir, "--overwrite") == 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--preset", "nope"], "invalid choice: 'nope'"),
        (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["train", "--epochs", "0"], "must be a positive integer"),
        (["train", "--batch-size", "-3"], "must be a positive integer"),
        (["train", "--lr", "0"], "must be positive"),
        (["train", "--val-split", "1.5"], r"must be in \[0, 1\)"),
        (["train", "--label-smoothing", "1"], r"must be in \[0, 1\)"),
        (["train", "--lr-step", "1e-320"], "must be at least 0.001 epochs"),
        (["train", "--augment", ""], "'' names no augmentation; say 'none' for none"),
        (["train", "--augment", ",,"], "',,' names no augmentation"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("faltung: error: ") and err.count("\n") == 1, err
    assert "usage:" not in err and "faltung train --help" in err
    assert message.replace("[", "").split("\\")[0] in err.replace("[", "")


def test_help_still_prints_the_usage_block(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: faltung train") and "--nesterov" in out


def test_optimizer_and_schedule_choices_come_from_the_registries():
    from faltung.cli import build_parser
    from faltung.optim import OPTIMIZERS
    from faltung.schedules import SCHEDULES

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    choices = {a.dest: a.choices for a in train._actions if a.choices}
    assert list(choices["optimizer"]) == list(OPTIMIZERS)
    assert list(choices["schedule"]) == list(SCHEDULES)


def test_missing_data_directory_and_files(tmp_path, synthetic_dir, capsys):
    assert train(tmp_path / "a", tmp_path / "nowhere") == 2
    assert "no such file or directory" in capsys.readouterr().err
    (synthetic_dir / "t10k-images-idx3-ubyte.gz").unlink()
    assert train(tmp_path / "b", synthetic_dir) == 2
    err = capsys.readouterr().err
    assert err.startswith("faltung: error: ") and err.count("\n") == 1
    assert "missing t10k-images-idx3-ubyte" in err and "Traceback" not in err


def test_corrupt_and_truncated_data_files(tmp_path, synthetic_dir, capsys):
    path = synthetic_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    assert train(tmp_path / "a", synthetic_dir) == 2
    err = capsys.readouterr().err
    assert "train-labels-idx1-ubyte.gz" in err and "truncated" in err and err.count("\n") == 1


def test_unwritable_output_directory(tmp_path, synthetic_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert train(blocker / "out", synthetic_dir) == 2
    assert (
        "output directory" in capsys.readouterr().err and blocker.read_text() == "not a directory"
    )


def test_too_large_sizes_are_explained(tmp_path, synthetic_dir, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                str(synthetic_dir),
                "--out",
                str(tmp_path / "x"),
                "--train-size",
                "5000",
                "--epochs",
                "1",
            ]
        )
        == 2
    )
    assert "--train-size 5000 exceeds the 200 images available" in capsys.readouterr().err


def test_evaluate_prints_accuracy_per_class_and_confusion(tmp_path, synthetic_dir, capsys):
    train(tmp_path / "run", synthetic_dir)
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "run" / "model.npz"),
                "--data",
                str(synthetic_dir),
                "--plot",
                str(tmp_path / "cm.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "accuracy" in out and "per-class accuracy" in out and "confusion matrix" in out
    assert (tmp_path / "cm.png").stat().st_size > 1000
    assert f"wrote {tmp_path / 'cm.png'}" in out
    rows = [r for r in out.split("confusion matrix")[1].splitlines()[2:] if r[:5].strip().isdigit()]
    # Digit classes name themselves: a row is its index and its counts, nothing repeated.
    assert rows and all(len(row.split()) == len(rows[0].split()) == 1 + len(rows) for row in rows)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x93NUMPY junk"])
def test_evaluate_rejects_files_that_are_not_models(tmp_path, content, capsys):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"faltung: error: {path}") and err.count("\n") == 1


def test_evaluate_model_of_another_input_shape(tmp_path, synthetic_dir, capsys):
    from faltung import Sequential
    from faltung.io import save_model
    from faltung.layers import Conv2D, Dense, Flatten

    path = tmp_path / "rgb.npz"
    save_model(Sequential([Conv2D(3, 2, 3), Flatten(), Dense(2 * 26 * 26, 10)], seed=0), path)
    assert main(["evaluate", str(path), "--data", str(synthetic_dir)]) == 2
    assert "expected 3 input channels" in capsys.readouterr().err


def test_summary_and_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and "faltung 0.1.0" in capsys.readouterr().out


def test_short_real_mnist_run(tmp_path, mnist_dir, capsys):
    """One epoch on 2,000 real images must already classify most of 1,000 test digits."""
    code = main(
        [
            "train",
            "--preset",
            "lenet",
            "--data",
            str(mnist_dir),
            "--out",
            str(tmp_path),
            "--epochs",
            "1",
            "--train-size",
            "2000",
            "--test-size",
            "1000",
            "--no-plots",
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.85, metrics["test_accuracy"]
    assert np.isclose(sum(map(sum, metrics["confusion_matrix"])), 10000)


def test_the_banner_describes_the_run_that_happens(tmp_path, synthetic_dir, capsys):
    assert train(tmp_path / "run", synthetic_dir, "--epochs", "1", "--no-plots") == 0
    out = capsys.readouterr().out
    assert "60,000" not in out
    assert (
        "training: 1 epoch at batch 20, adam lr 0.002, cosine decay to lr x0.01 over 1 epoch after 0.5 warm-up epochs"
        in out
    )
    assert "data: mnist, all 200 training images, all 50 test images;" in out
    assert train(tmp_path / "r2", synthetic_dir, "--train-size", "120", "--epochs", "1",
                 "--no-plots") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "120 of 200 training images, all 50 test images (drawn with seed 0)" in out
    assert "augmentation" not in out
    assert train(tmp_path / "r3", synthetic_dir, "--epochs", "1", "--augment", "auto",
                 "--no-plots") == 0  # fmt: skip
    assert "augmentation: shifts of up to 2 pixels, rotations of up to 10 degrees" in (
        capsys.readouterr().out
    )
    assert train(tmp_path / "r4", synthetic_dir, "--epochs", "1", "--schedule", "step",
                 "--lr-step", "0.5", "--no-plots") == 0  # fmt: skip
    assert "lr x0.9 every 0.5 epochs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--nesterov"], "--nesterov needs a positive --momentum"),
        (
            ["--optimizer", "adam", "--momentum", "0.9"],
            "--momentum does not apply to --optimizer adam",
        ),
        (["--optimizer", "adamw", "--nesterov"], "--nesterov does not apply to --optimizer adamw"),
    ],
)
def test_nesterov_and_momentum_flags_that_cannot_apply(tmp_path, flags, message, capsys):
    assert main(["train", "--preset", "article", "--out", str(tmp_path / "x"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_momentum_is_plain_unless_nesterov_is_asked_for():
    from faltung.cli.settings import make_optimizer, resolve_settings
    from faltung.presets import article_network

    def optimizer(*flags):
        args = build_parser().parse_args(["train", "--preset", "article", *flags])
        return make_optimizer(article_network(0), resolve_settings(args, None))

    plain = optimizer("--momentum", "0.9")
    assert plain.momentum == 0.9 and plain.nesterov is False
    assert optimizer("--momentum", "0.9", "--nesterov").nesterov is True
    # A checkpoint from before the flag existed resumes with the Nesterov it trained with.
    args = build_parser().parse_args(["train", "--preset", "article"])
    assert resolve_settings(args, {"momentum": 0.9})["nesterov"] is True
    assert resolve_settings(args, {"momentum": 0.0})["nesterov"] is False


def test_failed_runs_leave_no_output_directory(tmp_path, synthetic_dir, monkeypatch, capsys):
    out = tmp_path / "deep" / "run"
    assert train(out, tmp_path / "nowhere") == 2  # a bad --data
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["train", "--preset", "lenet", "--data", str(synthetic_dir), "--out", str(out),
                 "--test-size", "51"]) == 2  # fmt: skip
    assert "--test-size 51 exceeds the 50 images available" in capsys.readouterr().err
    monkeypatch.setenv("FALTUNG_DATA", str(tmp_path / "missing"))
    assert main(["train", "--preset", "lenet", "--out", str(out), *SMALL]) == 2
    assert "missing: no such file or directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_evaluate_scores_the_images_train_tested_on(tmp_path, synthetic_dir, capsys):
    out = tmp_path / "run"
    assert train(out, synthetic_dir, "--test-size", "20", "--seed", "3", "--epochs", "1") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    _, meta = load_model(out / "model.npz")
    from faltung.datasets import subset_indices

    assert meta.test_indices == tuple(subset_indices(50, 20, 3).tolist())
    capsys.readouterr()
    evaluate = ["evaluate", str(out / "model.npz"), "--data", str(synthetic_dir)]
    assert main(evaluate) == 0
    recorded = capsys.readouterr().out.splitlines()[0]
    assert "on the 20 mnist test images this model was tested on in training" in recorded
    assert f"accuracy {metrics['test_accuracy']:.4f}" in recorded
    assert main([*evaluate, "--test-size", "20", "--seed", "3"]) == 0
    drawn = capsys.readouterr().out.splitlines()[0]
    assert "on 20 mnist test images drawn with seed 3" in drawn
    assert drawn.split(" on ")[0] == recorded.split(" on ")[0]  # the same images, same score
    assert main([*evaluate, "--test-size", "20"]) == 0  # the seed defaults to the model's
    assert "drawn with seed 3" in capsys.readouterr().out
    assert main([*evaluate, "--all"]) == 0
    every = capsys.readouterr().out.splitlines()[0]
    assert f"accuracy {metrics['full_test_accuracy']:.4f}" in every
    assert "on all 50 mnist test images" in every


def test_a_text_file_is_not_a_model_file(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not a model\n")
    for command in (["evaluate", str(path)], ["predict", str(path), "x.png"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err == f"faltung: error: {path}: not a faltung model file (not an .npz archive)\n"
        assert "pickle" not in err


def test_train_on_the_reference_kernels_matches_the_fast_run(tmp_path, synthetic_dir):
    """--kernels reference trains on the article's plain kernels: the same run, same numbers."""
    losses = {}
    for kernels in ("fast", "reference"):
        out = tmp_path / kernels
        assert train(out, synthetic_dir, "--epochs", "1", "--kernels", kernels) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["settings"]["kernels"] == kernels
        losses[kernels] = metrics["final_loss"]
    np.testing.assert_allclose(losses["reference"], losses["fast"], rtol=1e-5)


def test_label_smoothing_is_a_setting_of_the_run(tmp_path, synthetic_dir, capsys):
    from faltung.cli.settings import resolve_settings

    args = build_parser().parse_args(["train", "--preset", "lenet"])
    assert resolve_settings(args, None)["label_smoothing"] == 0.0
    assert resolve_settings(args, {"momentum": 0.0})["label_smoothing"] == 0.0  # older runs
    assert train(tmp_path / "plain", synthetic_dir, "--epochs", "1", "--no-plots") == 0
    assert "label smoothing" not in capsys.readouterr().out
    assert train(tmp_path / "smooth", synthetic_dir, "--epochs", "1", "--no-plots",
                 "--label-smoothing", "0.1") == 0  # fmt: skip
    assert "after 0.5 warm-up epochs, label smoothing 0.1, seed 0" in capsys.readouterr().out
    # The smoothed targets' entropy is a floor under the loss: it trains against them.
    losses = [
        json.loads((tmp_path / run / "history.json").read_text())[0]["loss"]
        for run in ("plain", "smooth")
    ]
    assert losses[1] > losses[0]


def test_the_resnet_presets_flips_are_not_for_digits(tmp_path, synthetic_dir, capsys):
    from faltung.cli.settings import preset_augment

    preset = build_parser().parse_args(["train", "--preset", "resnet"])
    asked = build_parser().parse_args(["train", "--preset", "resnet", "--augment", "flip"])
    assert preset_augment("flip", preset, digits=False) == "flip"
    assert preset_augment("flip", preset, digits=True) is None
    assert preset_augment("shift,flip", preset, digits=True) == "shift"
    assert preset_augment("flip", asked, digits=True) == "flip"  # asked for, so kept
    # MNIST's digits (the synthetic stand-in): the preset trains without flips.
    assert main(["train", "--preset", "resnet", "--data", str(synthetic_dir), "--epochs", "1",
                 "--train-size", "40", "--test-size", "20", "--batch-size", "20",
                 "--out", str(tmp_path / "r"), "--no-plots"]) == 0  # fmt: skip
    assert "augmentation" not in capsys.readouterr().out


def test_resuming_under_another_preset_says_how_to_resume(tmp_path, synthetic_dir, capsys):
    out = tmp_path / "run"
    assert train(out, synthetic_dir, "--epochs", "1", "--no-plots") == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--data", str(synthetic_dir)]) == 2
    assert (
        f"belongs to preset 'lenet', not 'article': resume it with --preset lenet --out {out} "
        "--resume"
    ) in capsys.readouterr().err


@pytest.fixture
def two_threads():
    before = parallel.get_num_threads()
    parallel.set_num_threads(2)
    yield
    parallel.set_num_threads(before)


def test_batches_split_over_threads_train_and_resume_bit_for_bit(
    tmp_path, synthetic_dir, capsys, two_threads
):
    split = ["--batch-size", "64", "--schedule", "constant", "--no-plots"]
    assert train(tmp_path / "whole", synthetic_dir, *split) == 0
    assert "threads: 2 share each batch of 64" in capsys.readouterr().out
    assert train(tmp_path / "resumed", synthetic_dir, *split, "--epochs", "1") == 0
    argv = ["train", "--preset", "lenet", "--data", str(synthetic_dir)]
    assert main([*argv, "--out", str(tmp_path / "resumed"), "--resume", "--epochs", "2"]) == 0
    whole, _ = load_model(tmp_path / "whole" / "model.npz")
    resumed, _ = load_model(tmp_path / "resumed" / "model.npz")
    for name, value in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)
    capsys.readouterr()
    assert train(tmp_path / "small", synthetic_dir) == 0  # batch 20: one thread
    assert "threads:" not in capsys.readouterr().out
    parallel.set_num_threads(1)  # a resume on another thread count is told what differs
    assert main([*argv, "--out", str(tmp_path / "resumed"), "--resume", "--epochs", "3"]) == 0
    printed = capsys.readouterr().out
    assert "split its batches over 2 threads, this one over 1: dropout's masks" in printed


def test_the_command_prints_a_warning_as_one_line():
    script = (
        "import warnings, faltung.cli as cli\n"
        "cli.main = lambda: warnings.warn('something to know') or 0\n"
        "raise SystemExit(cli.entry())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "faltung: warning: something to know\n"


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["train", "--schedule", "cosine", "--lr-step", "3"],
            "--lr-step does not apply to --schedule cosine",
        ),
        (
            ["train", "--preset", "lenet", "--lr-gamma", "0.5"],
            "--lr-gamma does not apply to --schedule cosine",
        ),
        (
            ["summary", "--preset", "lenet", "--input-shape", "3x"],
            "must be CxHxW, such as 1x28x28, got '3x'",
        ),
    ],
)
def test_flags_that_would_be_ignored_are_errors(argv, message, capsys):
    try:
        assert main(argv) == 2
    except SystemExit as exit_info:  # argparse's own refusals
        assert exit_info.code == 2
    err = capsys.readouterr().err
    assert err.startswith("faltung: error: ") and message in err, err


def test_summary_builds_a_preset_for_the_input_shape_given(capsys):
    assert main(["summary", "--preset", "lenet", "--input-shape", "3x32x32"]) == 0
    out = capsys.readouterr().out
    assert "Input shape: (N, 3, 32, 32)" in out and "(N, 1250)" in out  # 50 maps of 5x5
