r"""The flow-matching probability path shared by DiTo and SSDD.

Time convention (used everywhere in difftok): **t = 0 is data, t = 1 is noise**, and the network
receives ``time_scale * t`` (``time_scale = 1000``).

.. math::

    x_t = \alpha_t x + \sigma_t \varepsilon,\qquad \alpha_t = 1 - t,\qquad
    \sigma_t = \sigma_{min} + t (1 - \sigma_{min})

The network predicts :math:`u = x - (1-\sigma_{min})\varepsilon = -\,dx_t/dt` (the official code's
sign; the DiTo paper writes the opposite sign). The one-step data estimate is
:math:`\hat x_0 = x_t + t\,u`. For :math:`\sigma_{min}=0` (SSDD) it is exact when ``u`` is exact;
for :math:`\sigma_{min}>0` (DiTo, 1e-5) it equals :math:`x + \sigma_{min}\varepsilon`, i.e. it keeps
a residual noise of standard deviation :math:`\sigma_{min}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["FlowPath", "PathSample", "expand_time"]


def expand_time(t: Tensor, like: Tensor) -> Tensor:
    """Reshape per-sample times ``(B,)`` to broadcast against ``like`` ``(B, C, *spatial)``."""
    return t.reshape(t.shape[0], *([1] * (like.ndim - 1))).to(like.dtype)


@dataclass
class PathSample:
    """A point on the path and the regression target at it."""

    x_t: Tensor = field(metadata={"help": "noisy sample, (B, C, *spatial)"})
    t: Tensor = field(metadata={"help": "time in [0, 1], (B,)"})
    noise: Tensor = field(metadata={"help": "epsilon, (B, C, *spatial)"})
    target: Tensor = field(metadata={"help": "u = x - (1 - sigma_min) * eps, (B, C, *spatial)"})


@dataclass(frozen=True)
class FlowPath:
    """Affine conditional-OT path with a noise floor ``sigma_min``.

    Args:
        sigma_min: minimal noise level (1e-5 for DiTo, 0 for SSDD).
        time_scale: factor applied to ``t`` before it enters the network.
    """

    sigma_min: float = 1e-5
    time_scale: float = 1000.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in [0, 1), got {self.sigma_min}")

    def alpha(self, t: Tensor) -> Tensor:
        """Signal coefficient ``1 - t``."""
        return 1.0 - t

    def sigma(self, t: Tensor) -> Tensor:
        """Noise coefficient ``sigma_min + t (1 - sigma_min)``."""
        return self.sigma_min + t * (1.0 - self.sigma_min)

    def sample(self, *, x: Tensor, noise: Tensor, t: Tensor) -> PathSample:
        """Noise data ``x`` to time ``t`` (per sample) and return the regression target."""
        t_b = expand_time(t, x)
        x_t = self.alpha(t_b) * x + self.sigma(t_b) * noise  # (B, C, *spatial)
        target = x - (1.0 - self.sigma_min) * noise
        return PathSample(x_t=x_t, t=t, noise=noise, target=target)

    def data_estimate(self, *, x_t: Tensor, t: Tensor, u: Tensor) -> Tensor:
        """One-step estimate ``x̂0 = x_t + t·u`` (exact for sigma_min = 0, see module docs)."""
        return x_t + expand_time(t, x_t) * u

    def velocity_to_dxdt(self, u: Tensor) -> Tensor:
        """Convert the network output ``u`` to the ODE velocity ``dx_t/dt = -u``."""
        return -u

    def network_time(self, t: Tensor) -> Tensor:
        """The time value the network sees (``time_scale * t``)."""
        return t * self.time_scale
