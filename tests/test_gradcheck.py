"""gradcheck's result says whether the gradients are right, not only how far off they are."""

from __future__ import annotations

import numpy as np

from faltung import gradcheck
from faltung.gradcheck import GradcheckResult
from faltung.layers import Dense, Sigmoid


def test_a_correct_layer_passes_and_says_so():
    result = gradcheck(Dense(3, 2, rng=0), np.random.default_rng(0).random((4, 3)))
    assert result.ok and result.passed() and result.tolerance == 1e-6
    text = str(result)
    assert text.startswith("gradcheck passed: max relative error ")
    assert "(tolerance 1e-06)" in text.splitlines()[0]
    assert {line.split()[0] for line in text.splitlines()[1:]} == {"input", "weight", "bias"}
    assert repr(result).startswith("<GradcheckResult gradcheck passed")


def test_a_wrong_gradient_fails_and_says_so():
    class WrongSigmoid(Sigmoid):
        def backward(self, dy):
            return 2 * super().backward(dy)

    result = gradcheck(WrongSigmoid(), np.ones((2, 3)))
    assert not result.ok and result.max_error > 0.1
    assert str(result).startswith("gradcheck FAILED: max relative error ") and "in input" in str(
        result
    )


def test_the_tolerance_is_the_callers():
    result = GradcheckResult({"input": 1e-5}, tolerance=1e-4)
    assert result.ok and not result.passed(1e-6)
    assert not GradcheckResult({"input": 1e-5}).ok


def test_a_gradient_that_is_zero_in_truth_passes():
    """A convolution's bias before a batch norm has a gradient of exactly zero; the
    central differences' rounding noise there is not an error."""
    from faltung import Sequential
    from faltung.layers import BatchNorm2D, Conv2D

    model = Sequential([("conv", Conv2D(3, 4, 3, padding=1, rng=0)), ("bn", BatchNorm2D(4))])
    result = gradcheck(model, np.random.default_rng(0).standard_normal((2, 3, 5, 5)))
    assert result.ok, str(result)


def test_a_wrong_small_gradient_still_fails():
    """A bias gradient a hundredth of the weight's, wrong by half, is caught."""

    class HalfBias(Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["bias"] = self.grads["bias"] * 0.5
            return dx

    x = np.random.default_rng(0).random((4, 3)) * 100  # the weight's gradient dominates
    result = gradcheck(HalfBias(3, 2, rng=0), x)
    assert not result.ok and result.worst == "bias"


def test_a_wrong_gradient_far_below_the_others_still_fails():
    """The floor is the rounding noise, not a share of the largest gradient: a layer whose
    gradients are 1e-7 of the others' is still checked, even at a loose tolerance."""
    from faltung import Sequential
    from faltung.layers import ReLU

    class Frozen(Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads = {key: np.zeros_like(g) for key, g in self.grads.items()}
            return dx

    model = Sequential(
        [("fc1", Frozen(3, 4, rng=0)), ("relu", ReLU()), ("fc2", Dense(4, 2, rng=1))]
    )
    model["fc2"].params["weight"] *= 1e-7
    result = gradcheck(model, np.random.default_rng(0).random((5, 3)) * 10, tolerance=1e-3)
    assert not result.ok and result.worst.startswith("fc1.")


class DoubledBias(Dense):
    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["bias"] = self.grads["bias"] * 2
        return dx


def test_the_floor_does_not_grow_with_large_outputs_under_a_loss():
    """MSE of outputs near 1,000 against targets 1e-4 away: the loss's rounding is tiny,
    and a doubled bias gradient fails."""
    from faltung import Sequential
    from faltung.losses import MSELoss

    for layer, ok in ((Dense(3, 10, rng=0), True), (DoubledBias(3, 10, rng=0), False)):
        layer.params["bias"][:] = 1e3
        model = Sequential([("fc", layer)])
        x = np.random.default_rng(0).random((4, 3))
        targets = model.astype(np.float64).forward(x) + 1e-4
        result = gradcheck(model, x, labels=targets, loss=MSELoss())
        assert result.ok is ok, str(result)


def test_the_floor_does_not_grow_with_the_number_of_outputs():
    from faltung import Sequential
    from faltung.layers import ReLU

    class SlightlyWrongBias(Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["bias"] = self.grads["bias"] * (1 + 2e-6)
            return dx

    wide = SlightlyWrongBias(4, 2000, rng=1)
    wide.params["bias"][:] = 1
    model = Sequential([("fc1", Dense(3, 4, rng=0)), ("relu", ReLU()), ("fc2", wide)])
    result = gradcheck(model, np.random.default_rng(0).random((5, 3)))
    assert not result.ok and result.worst == "fc2.bias"


def test_a_gradient_backward_never_wrote_fails_instead_of_crashing():
    class NoBias(Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            del self.grads["bias"]
            return dx

    result = gradcheck(NoBias(3, 2, rng=0), np.ones((4, 3)))
    assert not result.ok and result.worst == "bias"
