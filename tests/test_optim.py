"""Optimisers and schedules: update rules against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faltung import Sequential
from faltung.layers import Dense
from faltung.optim import SGD, Adam, AdamW, RMSProp
from faltung.schedules import Constant, CosineDecay, ExponentialDecay, StepDecay


def one_weight(value=1.0, grad=0.5):
    model = Sequential([Dense(1, 1, bias=False)])
    model[0].params["weight"][:] = value
    model[0].grads["weight"] = np.full((1, 1), grad, np.float32)
    return model


def test_sgd_with_l2_momentum_and_nesterov():
    model = one_weight()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.step()  # g = 0.5 + 0.01 = 0.51, v = 0.51, w = 1 - 0.051
    opt.step()  # g = 0.5 + 0.01*0.949, v = 0.9*0.51 + g
    g2 = 0.5 + 0.01 * 0.949
    expected = 0.949 - 0.1 * (0.9 * 0.51 + g2)
    assert model[0].params["weight"][0, 0] == pytest.approx(expected, rel=1e-6)

    model = one_weight()
    SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True).step()
    assert model[0].params["weight"][0, 0] == pytest.approx(1 - 0.1 * (0.5 + 0.9 * 0.5))


def test_adam_first_step_is_lr_times_sign():
    model = one_weight()
    Adam(model.parameters(), lr=0.01).step()
    assert model[0].params["weight"][0, 0] == pytest.approx(0.99, rel=1e-5)


def test_adamw_decays_decoupled_from_the_gradient():
    model = one_weight(grad=0.0)
    AdamW(model.parameters(), lr=0.1, weight_decay=0.5).step()
    assert model[0].params["weight"][0, 0] == pytest.approx(1 - 0.1 * 0.5)


def test_rmsprop_first_step():
    model = one_weight()
    RMSProp(model.parameters(), lr=0.01, alpha=0.99).step()
    expected = 1 - 0.01 * 0.5 / (math.sqrt(0.01 * 0.25) + 1e-8)
    assert model[0].params["weight"][0, 0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSProp])
def test_updates_keep_float32(cls):
    model = one_weight()
    opt = cls(model.parameters(), lr=0.01)
    for _ in range(3):
        opt.step()
    assert model[0].params["weight"].dtype == np.float32


def test_optimizer_state_round_trip():
    model = one_weight()
    opt = Adam(model.parameters(), lr=0.01)
    opt.step()
    state = opt.state_dict()
    clone = Adam(one_weight().parameters(), lr=0.5)
    clone.load_state_dict(state)
    assert clone.steps == 1 and clone.lr == 0.01
    np.testing.assert_array_equal(
        clone.state["0.weight"]["exp_avg"], opt.state["0.weight"]["exp_avg"]
    )


def test_article_step_schedule():
    schedule = StepDecay(0.005, step_size=10, gamma=0.9)
    assert schedule(0) == 0.005 and schedule(9.99) == 0.005
    assert schedule(10) == pytest.approx(0.0045) and schedule(49) == pytest.approx(0.005 * 0.9**4)


def test_other_schedules_and_warmup():
    assert ExponentialDecay(1.0, 0.5)(3) == 0.125
    cosine = CosineDecay(1.0, total_epochs=10, min_lr=0.1)
    assert (
        cosine(0) == 1.0 and cosine(10) == pytest.approx(0.1) and cosine(5) == pytest.approx(0.55)
    )
    warm = Constant(1.0, warmup_epochs=2)
    assert warm(0) == 0.0 and warm(1) == 0.5 and warm(2) == 1.0


def test_a_step_decay_may_step_within_an_epoch():
    half = StepDecay(1.0, step_size=0.5, gamma=0.5)
    assert half(0.25) == 1.0 and half(0.75) == 0.5 and half(1.25) == 0.25


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda: Constant(0.1, warmup_epochs=1, warmup_start=-1.0),
            r"warmup_start must be in \[0, 1\]",
        ),
        (lambda: Constant(0.1, warmup_epochs=float("nan")), "warmup_epochs must be non-negative"),
        (lambda: StepDecay(0.1, step_size=0), "step_size must be positive, got 0"),
        (lambda: StepDecay(0.1, step_size=1e-320), "step_size must be at least 1e-06"),
        (lambda: StepDecay(0.1, step_size=10, gamma=-0.5), "gamma must be positive and finite"),
        (lambda: ExponentialDecay(0.1, gamma=float("inf")), "gamma must be positive and finite"),
        (
            lambda: CosineDecay(0.1, total_epochs=4, min_lr=-0.1),
            r"min_lr must be in \[0, base_lr\]",
        ),
        (lambda: CosineDecay(0.1, total_epochs=float("nan")), "total_epochs must be positive"),
    ],
)
def test_schedules_refuse_rates_that_would_go_negative_or_undefined(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="lr must be positive"):
        SGD(one_weight().parameters(), lr=0)
    with pytest.raises(ValueError, match="nesterov needs a positive momentum"):
        SGD(one_weight().parameters(), lr=0.1, nesterov=True)
