r"""An array of CustomNeurons whose summed spikes approximate a function.

The input range is partitioned among ``P`` neurons (`partition.make_edges`).
An input ``x`` is routed to the neuron ``k`` whose cell
$[e_k, e_{k+1})$ holds it (for an even or odd target, the cell of
$|x|$), and drives it with the constant current

$$
u = 1 + \frac{z - e_k}{e_{k+1} - e_k} \in [1, 2), \qquad z = x \text{ or } |x|.
$$

Neuron ``k`` is a `CustomNeuronNode` with decay
$\lambda = 0$, no reset, per-step thresholds $\theta_{k,t}$ and
per-step amplitudes $A_{k,t}$ (paper eq. 14): at step ``t`` it fires
iff $u \ge \theta_{k,t}$ and emits $A_{k,t}$. Over ``T`` steps

$$
y(x) = s(x) \sum_{t<T} A_{k,t}\,[u \ge \theta_{k,t}],
$$

with $s(x) = \operatorname{sign}(x)$ for odd targets, 1 otherwise. A
threshold below 1 fires for every input of the cell (the fitter puts step 0
there, so $A_{k,0}$ is the cell's base value); one at 2 or above never
fires. Each neuron is thus a staircase of up to ``T`` levels on its cell, and
the array a staircase of up to ``P T`` levels on the domain.

Outside the domain the approximator follows the target's linear asymptote
(``left_tail`` / ``right_tail`` = ``(slope, intercept)`` in ``z``): a linear
map of the input, which in a spiking network is a synapse, not a neuron. Its
contribution is emitted at step 0.

**Binary coding** (``coding="binary"``). A staircase of ``T`` levels costs
up to ``T`` spikes; the few-spike idea (Stoeckl & Maass 2021) is to let the
neuron *reset*, so that its spikes form a binary expansion of its input. With
``coding="binary"`` neuron ``k`` is a `CustomNeuronNode` with decay
$\lambda = 1$, subtractive reset by its threshold, and the current
$r = u - 1 \in [0, 1)$ injected at step 0 only:

$$
h_0 = r, \qquad S_t = [h_t \ge \theta_{k,t}], \qquad
h_{t+1} = h_t - \theta_{k,t} S_t, \qquad
y(x) = s(x)\Big(b_k + \sum_{t<T} A_{k,t} S_t\Big).
$$

With the default thresholds $\theta_{k,t} = 2^{-(t+1)}$ the spikes are
the first ``T`` binary digits of ``r``: ``2**T`` levels per cell for about
``T / 2`` spikes. The cell's base value $b_k$ (``bias``) is carried by
the synapse that routes the input to its neuron: one addition, no spike.
``spikes_per_input`` counts the spikes only; `metrics.evaluate` reports the
bias addition beside them.

**Count path.** Because ``u`` lies in ``[1, 2)``, comparing it with a
threshold is the same as comparing the integer bit patterns of the two
float32 numbers. Every threshold becomes the integer key
``k * 2**24 + bits(theta) - bits(1.0)``; one sorted search over the ``P (T + 1)``
keys finds, for every input, how many of its neuron's thresholds it has
reached and the cumulative amplitude. This is exactly what the spike path
computes, for every input, without stepping. In binary coding the count path
runs the same ``T`` float32 updates as the spike path, on every input at
once: the spikes are identical.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import base, surrogate
from torch import Tensor, nn

from bt_neurons import _checks
from bt_neurons.functional import custom_neuron_step

__all__ = ["NeuronArrayApproximator", "SYMMETRIES", "CODINGS"]

SYMMETRIES = ("none", "even", "odd")
CODINGS = ("level", "binary")
_ONE_BITS = 0x3F800000  # bits of float32 1.0
_BLOCK = 1 << 24  # key space per neuron
_MANTISSA = 1 << 23  # keys of u in [1, 2) are 0 .. 2**23 - 1
_BELOW_TWO = float(torch.nextafter(torch.tensor(2.0), torch.tensor(0.0)))


def _as_float32(name: str, value: object) -> Tensor:
    """``value`` (a tensor or a nested sequence of numbers) as a new float32 tensor, or a ``TypeError``."""
    if isinstance(value, Tensor):
        if not (
            value.is_floating_point() or value.dtype in (torch.int32, torch.int64, torch.int16, torch.int8)
        ):
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {value.dtype}")
        return value.detach().to(torch.float32).clone()
    try:
        return torch.as_tensor(value, dtype=torch.float32).clone()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a tensor or a sequence of numbers, got {type(value).__name__}"
        ) from None


class NeuronArrayApproximator(base.MemoryModule):
    r"""Array of ``P`` CustomNeurons approximating a function (see the module docs).

    A SpikingJelly multi-step module with two paths:

    - ``path="count"`` (default): input ``x`` ``[N, *]`` (any shape), output
      $y(x)$ with the shape and dtype of ``x``, no stepping;
    - ``path="spike"``: input ``x_seq`` ``[T, N, *]`` (step mode ``"m"``) or
      ``[N, *]`` (``"s"``), the current of each step; output the amplitude of
      each step's spike, same shape. For a constant input its sum over the
      ``T`` steps equals the count path.

    Args:
        edges: ``[P + 1]`` strictly increasing cell edges (float32 after rounding).
        timesteps: ``T``, steps per neuron (1 to 64).
        symmetry: ``"none"``, ``"even"`` (``y(-x) = y(x)``) or ``"odd"``
            (``y(-x) = -y(x)``); with a symmetry the edges cover ``|x|``.
        left_tail: ``(slope, intercept)`` of ``y`` for ``z < e_0``.
        right_tail: ``(slope, intercept)`` of ``y`` for ``z > e_P``.
        thresholds: initial ``[P, T]`` thresholds (default: level coding, step 0 at
            0.5 and the others evenly spread over ``(1, 2)``; binary coding,
            $2^{-(t+1)}$; binary thresholds must be > 0).
        amplitudes: initial ``[P, T]`` amplitudes (default zeros).
        coding: ``"level"`` (a staircase: no reset, constant current) or
            ``"binary"`` (subtractive reset, current at step 0: the spikes are a
            binary expansion); see the module docs.
        bias: ``[P]`` base value of each cell, added by the routing synapse at
            step 0 without a spike (default zeros).
        path: ``"count"`` or ``"spike"``.
        step_mode: ``"m"`` or ``"s"`` (spike path).
        surrogate_function: surrogate of the spike path (default ``surrogate.ATan()``).
        name: a label (the target's name).
        check_finite: raise on NaN / Inf inputs.
    """

    def __init__(
        self,
        edges: Tensor,
        timesteps: int,
        *,
        symmetry: str = "none",
        left_tail: tuple[float, float] = (0.0, 0.0),
        right_tail: tuple[float, float] = (0.0, 0.0),
        thresholds: Tensor | None = None,
        amplitudes: Tensor | None = None,
        path: str = "count",
        step_mode: str = "m",
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        name: str = "custom",
        check_finite: bool = True,
        coding: str = "level",
        bias: Tensor | None = None,
    ) -> None:
        super().__init__()
        T = _checks.check_timesteps("timesteps", timesteps)
        if T > 64:
            raise ValueError(f"timesteps must be <= 64, got {T}")
        _checks.check_choice("symmetry", symmetry, SYMMETRIES)
        _checks.check_choice("path", path, ("count", "spike"))
        _checks.check_choice("coding", coding, CODINGS)
        self.step_mode = _checks.check_choice("step_mode", step_mode, ("s", "m"))
        _checks.check_bool("check_finite", check_finite)
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if surrogate_function is not None:
            _checks.check_callable("surrogate_function", surrogate_function)
        edges = _as_float32("edges", edges)
        if edges.dim() != 1 or len(edges) < 2 or not bool((edges[1:] > edges[:-1]).all()):
            raise ValueError(
                "edges must be a strictly increasing 1-D sequence of at least 2 values (float32)"
            )
        _checks.check_finite("edges", edges)
        if symmetry != "none" and edges[0].item() < 0:
            raise ValueError(f"with symmetry={symmetry!r} the edges cover |x| and must start at >= 0")
        P = len(edges) - 1
        if thresholds is None and coding == "binary":
            thresholds = (0.5 ** torch.arange(1, T + 1, dtype=torch.float64)).expand(P, T)
        elif thresholds is None:
            thresholds = torch.empty(P, T)
            thresholds[:, 0] = 0.5
            thresholds[:, 1:] = 1 + torch.arange(1, T) / T
        if amplitudes is None:
            amplitudes = torch.zeros(P, T)
        thresholds = _as_float32("thresholds", thresholds)
        amplitudes = _as_float32("amplitudes", amplitudes)
        bias = torch.zeros(P) if bias is None else _as_float32("bias", bias)
        if tuple(bias.shape) != (P,):
            raise ValueError(f"bias must have shape [P] = [{P}], got {tuple(bias.shape)}")
        _checks.check_finite("bias", bias)
        tails = {}
        for nm, tail in (("left_tail", left_tail), ("right_tail", right_tail)):
            if isinstance(tail, torch.Tensor):
                tail = tail.detach().reshape(-1).tolist()
            if isinstance(tail, str) or not hasattr(tail, "__len__") or len(tail) != 2:
                raise ValueError(f"{nm} must be a pair (slope, intercept), got {tail!r}")
            tails[nm] = [_checks.check_number(nm, v) for v in tail]
            _checks.check_finite(nm, torch.tensor(tails[nm]))
        for nm, t in (("thresholds", thresholds), ("amplitudes", amplitudes)):
            if tuple(t.shape) != (P, T):
                raise ValueError(f"{nm} must have shape [P, T] = [{P}, {T}], got {tuple(t.shape)}")
            _checks.check_finite(nm, t)
        if coding == "binary" and not bool((thresholds > 0).all()):
            raise ValueError("with coding='binary' every threshold must be > 0 (the neuron resets by it)")
        self.register_buffer("edges", edges)
        self.register_buffer("left_tail", torch.tensor(tails["left_tail"], dtype=torch.float32))
        self.register_buffer("right_tail", torch.tensor(tails["right_tail"], dtype=torch.float32))
        self.thresholds = nn.Parameter(thresholds)
        self.amplitudes = nn.Parameter(amplitudes)
        self.bias = nn.Parameter(bias)
        self.coding = coding
        # steps since reset: a 0-d int64 tensor (reset with functional.reset_net, read as data when compiled)
        self.register_memory("t", torch.zeros((), dtype=torch.long))
        self.T = T
        self.symmetry = symmetry
        self.path = path
        self.name = name
        self.check_finite = bool(check_finite)
        self.surrogate_function = surrogate_function if surrogate_function is not None else surrogate.ATan()
        self._table_cache: tuple[tuple, tuple[Tensor, Tensor, Tensor]] | None = None

    @property
    def neurons(self) -> int:
        """Number of neurons ``P``."""
        return len(self.edges) - 1

    @property
    def parameter_count(self) -> int:
        """Numbers that define the approximator: edges, amplitudes, biases, thresholds and tails.

        Level coding: ``(P + 1) + 2 P T + 4``. Binary coding: ``(P + 1) + P T + P``
        plus ``T`` thresholds when every neuron shares them (the default powers of
        two), else ``P T``; plus the 4 tail numbers.
        """
        P, T = self.neurons, self.T
        if self.coding == "level":
            return (P + 1) + 2 * P * T + 4
        shared = bool((self.thresholds == self.thresholds[:1]).all())
        return (P + 1) + P * T + P + (T if shared else P * T) + 4

    @property
    def domain(self) -> tuple[float, float]:
        """``(e_0, e_P)``: the range of ``z`` covered by neurons."""
        return self.edges[0].item(), self.edges[-1].item()

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, neurons={self.neurons}, T={self.T}, domain={self.domain}, "
            f"symmetry={self.symmetry!r}, coding={self.coding!r}, path={self.path!r}, "
            f"step_mode={self.step_mode!r}"
        )

    def supported_step_mode(self):
        return ("s", "m")

    # ----------------------------------------------------------------- routing
    def route(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Route inputs to neurons.

        Returns:
            ``(k, u, inside, z)``: neuron index (long), local current in
            ``[1, 2)`` (float32), whether ``z`` lies in the domain, and ``z``
            (``x`` or ``|x|``, float32); all shaped like ``x``.
        """
        z = x.detach().to(torch.float32)
        if self.symmetry != "none":
            z = z.abs()
        k = (torch.bucketize(z, self.edges, right=True) - 1).clamp_(0, self.neurons - 1)
        lo = self.edges[k]
        u = (1 + (z - lo) / (self.edges[k + 1] - lo)).clamp_(1.0, _BELOW_TWO)
        inside = (z >= self.edges[0]) & (z <= self.edges[-1])
        return k, u, inside, z

    def _tails(self, x: Tensor, z: Tensor) -> Tensor:
        """Value of the linear asymptotes in ``z`` (before the symmetry sign), float32."""
        left = self.left_tail[0] * z + self.left_tail[1]
        right = self.right_tail[0] * z + self.right_tail[1]
        return torch.where(z < self.edges[0], left, right)

    def _sign(self, x: Tensor) -> Tensor | None:
        return torch.sign(x.detach()).to(torch.float32) if self.symmetry == "odd" else None

    def _check_input(self, x: Tensor, min_rank: int, what: str, name: str = "x") -> None:
        _checks.check_floating(name, x)
        _checks.check_rank(name, x, min_rank, what)
        _checks.check_same_device(name, x, "the approximator's parameters", self.edges)
        if self.check_finite:
            _checks.check_finite(name, x)

    def _check_step(self, t: int | Tensor, restart: str) -> None:
        if _checks.tracing():  # a value check: eager mode only
            return
        t = int(t)
        if t >= self.T:
            raise ValueError(
                f"this approximator's neurons have T={self.T} steps, step {t} was requested; {restart}"
            )

    # -------------------------------------------------------------- spike path
    def single_step_functional_forward(self, inputs, states, **kwargs):
        if self.coding == "binary":
            return self._binary_step(inputs, states)
        x = inputs[0]
        t = states[0]
        self._check_step(t, "call functional.reset_net(net) first")
        k, u, inside, z = self.route(x)
        # the step memory is a tensor (a gather: no Python int); the snnTorch face passes an int
        theta, amp = self._step_parameters(t, k)
        u = u + (x.to(torch.float32) - x.to(torch.float32).detach()) * self._input_gain(x, k)
        out = self._fire(u, theta, amp)
        if isinstance(t, Tensor):  # the tails come once, at step 0 (no branch on data)
            tail = torch.where(t == 0, self._tails(x, z), torch.zeros_like(z))
        else:
            tail = self._tails(x, z) if t == 0 else torch.zeros_like(z)
        out = torch.where(inside, out, tail)
        sign = self._sign(x)
        if sign is not None:
            out = out * sign
        return (out.to(x.dtype),), (t + 1, *states[1:])

    def _fire(self, current: Tensor, theta: Tensor, amp: Tensor) -> Tensor:
        """A CustomNeuron step with no memory (decay 0, no reset): ``amp`` where ``current >= theta``."""
        zero = torch.zeros((), dtype=current.dtype)
        out, _, _ = custom_neuron_step(
            current, zero, theta, zero, amp, amp, self.surrogate_function, reset=False
        )
        return out

    def _step_parameters(self, t: int | Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """``(theta_{k,t}, A_{k,t})`` of each input's neuron at step ``t``."""
        if isinstance(t, Tensor):  # the step memory (a gather: no Python int)
            step = t.to(self.thresholds.device).reshape(1)
            return self.thresholds.index_select(1, step)[:, 0][k], self.amplitudes.index_select(1, step)[
                :, 0
            ][k]
        return self.thresholds[:, t][k], self.amplitudes[:, t][k]

    def _binary_step(self, inputs, states):
        r"""One step of binary coding: the membrane $h_t$, then the neuron's spike at step ``t``.

        $h_t = r - \sum_{s<t} \theta_s S_s$ is a function of the step-0 current
        ``r`` and ``t``, so it is rebuilt from ``r`` at every step (the same float32
        updates as the count path) instead of being kept as a memory: the module's
        only state is the step counter, and a compiled step has one graph.
        """
        x = inputs[0]
        t = states[0]
        self._check_step(t, "call functional.reset_net(net) first")
        k, u, inside, z = self.route(x)
        h = (u - 1) + (x.to(torch.float32) - x.to(torch.float32).detach()) * self._input_gain(x, k)
        step = t if isinstance(t, Tensor) else torch.tensor(t)
        for s in range(self.T):  # the resets of the steps before t
            theta_s = self.thresholds.detach()[:, s][k]
            fired = (h.detach() >= theta_s) & (step > s)
            h = h - theta_s * fired
        theta, amp = self._step_parameters(t, k)
        out = self._fire(h, theta, amp)
        first = step == 0
        base = torch.where(inside, self.bias[k], self._tails(x, z))
        out = torch.where(inside, out, torch.zeros_like(out)) + torch.where(
            first, base, torch.zeros_like(base)
        )
        sign = self._sign(x)
        if sign is not None:
            out = out * sign
        return (out.to(x.dtype),), (t + 1, *states[1:])

    def _binary_run(self, k: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(b_k + sum_t A_{k,t} S_t, spike count)`` for neurons ``k`` at currents ``u`` (``T`` updates)."""
        h = u - 1
        value = self.bias[k]
        count = torch.zeros_like(k)
        for t in range(self.T):
            theta, amp = self.thresholds[:, t][k], self.amplitudes[:, t][k]
            fired = h >= theta
            value = value + amp * fired
            h = h - theta * fired
            count = count + fired
        return value, count

    def _input_gain(self, x: Tensor, k: Tensor) -> Tensor:
        """``du/dx`` inside the cell (for surrogate gradients to the input)."""
        gain = 1 / (self.edges[k + 1] - self.edges[k])
        if self.symmetry != "none":
            gain = gain * torch.sign(x.detach()).to(torch.float32)
        return gain

    def single_step_forward(self, x: Tensor, *args, **kwargs):
        if self.path == "count":
            return self.count(x)
        self._check_input(x, 0, "[N, *] or [] (step_mode='s')")
        return super().single_step_forward(x, *args, **kwargs)

    def multi_step_forward(self, x_seq: Tensor, *args, **kwargs):
        if self.path == "count":
            return self.count(x_seq)
        self._check_input(x_seq, 1, "[T, N, *] or [T] (step_mode='m')")
        if x_seq.shape[0] == 0:
            raise ValueError(
                "x must have at least one time step (T >= 1) along its first axis, "
                f"got shape {tuple(x_seq.shape)}"
            )
        return super().multi_step_forward(x_seq, *args, **kwargs)

    # -------------------------------------------------------------- count path
    def _table(self) -> tuple[Tensor, Tensor, Tensor]:
        """Sorted integer keys ``[P (T+1)]``, cumulative amplitudes and spike counts."""
        key = (self.thresholds._version, self.amplitudes._version, self.thresholds.data_ptr())
        grad = torch.is_grad_enabled() and self.amplitudes.requires_grad
        if not grad and self._table_cache is not None and self._table_cache[0] == key:
            return self._table_cache[1]
        P, T = self.thresholds.shape
        thr = self.thresholds.detach().to(torch.float32)
        bits = thr.view(torch.int32).to(torch.int64) - _ONE_BITS
        local = torch.where(thr < 1, torch.full_like(bits, -1), torch.where(thr >= 2, _MANTISSA, bits))
        local, order = torch.sort(local, dim=1, stable=True)
        base_key = torch.arange(P, device=thr.device, dtype=torch.int64).unsqueeze(1) * _BLOCK
        keys = torch.cat([torch.full((P, 1), -2, dtype=torch.int64, device=thr.device), local], 1) + base_key
        amp = self.amplitudes.to(torch.float64).gather(1, order)
        zeros = torch.zeros(P, 1, dtype=torch.float64, device=thr.device)
        values = torch.cat([zeros, torch.cumsum(amp, 1)], 1)
        counts = torch.arange(T + 1, device=thr.device).expand(P, T + 1)
        table = (keys.reshape(-1).contiguous(), values.reshape(-1), counts.reshape(-1))
        if not grad:
            self._table_cache = (key, table)
        return table

    def _lookup(self, k: Tensor, u: Tensor) -> Tensor:
        keys = self._table()[0]
        uk = k * _BLOCK + (u.view(torch.int32).to(torch.int64) - _ONE_BITS)
        return torch.searchsorted(keys, uk, right=True) - 1

    def count(self, x: Tensor) -> Tensor:
        r"""$y(x)$ without stepping: the sum over ``T`` steps of the spike path's output.

        Gradients: exact for the amplitudes; for ``x`` a straight-through
        estimate, the mean slope of the neuron's staircase over its cell (the
        tail's slope outside the domain). Thresholds train on the spike path
        or with the fitter's smooth relaxation.

        Args:
            x: inputs, any shape, floating dtype.

        Returns:
            Tensor with the shape and dtype of ``x``.
        """
        self._check_input(x, 0, "[N, *]")
        k, u, inside, z = self.route(x)
        if self.coding == "binary":
            inner = self._binary_run(k, u)[0]
        else:
            _, values, _ = self._table()
            inner = values[self._lookup(k, u)].to(torch.float32)
        out = torch.where(inside, inner, self._tails(x, z))
        sign = self._sign(x)
        if sign is not None:
            out = out * sign
        if x.requires_grad:
            out = out + self._slope(x, k, inside, z) * (x - x.detach()).to(torch.float32)
        return out.to(x.dtype)

    def _slope(self, x: Tensor, k: Tensor, inside: Tensor, z: Tensor) -> Tensor:
        """``dy/dx`` of the straight-through estimate: a neuron's mean staircase slope, or a tail's."""
        with torch.no_grad():
            P = self.neurons
            ks = torch.arange(P, device=x.device)
            lo, hi = torch.ones(P, device=x.device), torch.full((P,), _BELOW_TWO, device=x.device)
            if self.coding == "binary":
                bottom, top = self._binary_run(ks, lo)[0].double(), self._binary_run(ks, hi)[0].double()
            else:
                _, values, _ = self._table()
                bottom, top = values[self._lookup(ks, lo)], values[self._lookup(ks, hi)]
            slope = ((top - bottom) / (self.edges[1:] - self.edges[:-1]).double()).to(torch.float32)
            tail = torch.where(z < self.edges[0], self.left_tail[0], self.right_tail[0])
            dz = torch.where(inside, slope[k], tail)  # dy/dz
            # z = |x|: dz/dx = sign(x); an odd output is sign(x) y(z), so dy/dx = y'(z) there
            return dz * torch.sign(x.detach()).to(torch.float32) if self.symmetry == "even" else dz

    def spikes_per_input(self, x: Tensor) -> Tensor:
        """Number of spikes each input makes its neuron emit over ``T`` steps (0 outside the domain)."""
        self._check_input(x, 0, "[N, *]")
        with torch.no_grad():
            k, u, inside, _ = self.route(x)
            counts = (
                self._binary_run(k, u)[1] if self.coding == "binary" else self._table()[2][self._lookup(k, u)]
            )
            return torch.where(inside, counts, torch.zeros_like(k))

    def base_additions_per_input(self, x: Tensor) -> Tensor:
        """Additions each input costs besides its spikes: 1 where a bias or tail is added, else 0.

        Binary coding adds the cell's bias $b_k$ inside the domain; both codings
        add a tail's linear map outside it (a synapse, not a neuron). Level
        coding's base level is a spike (counted by `spikes_per_input`).
        """
        self._check_input(x, 0, "[N, *]")
        with torch.no_grad():
            _, _, inside, _ = self.route(x)
            return torch.where(inside, int(self.coding == "binary"), 1).to(torch.long)

    # ------------------------------------------------------------------ files
    @staticmethod
    def arguments_from_files(stem) -> tuple[dict, dict]:
        """Constructor arguments and metadata read from ``<stem>.safetensors`` / ``.json``."""
        from .storage import read_approximator_files

        tensors, meta = read_approximator_files(stem)
        args = dict(
            coding=str(meta.get("coding", "level")),
            bias=tensors.get("bias"),
            edges=tensors["edges"],
            timesteps=int(meta["timesteps"]),
            symmetry=meta["symmetry"],
            left_tail=tuple(tensors["left_tail"].tolist()),
            right_tail=tuple(tensors["right_tail"].tolist()),
            thresholds=tensors["thresholds"],
            amplitudes=tensors["amplitudes"],
            name=str(meta["target"]),
        )
        return args, meta

    @classmethod
    def load(cls, stem, **kwargs) -> NeuronArrayApproximator:
        """Load an approximator saved by `save` or ``bt-fit`` (``stem`` without suffix).

        Keyword arguments (``path``, ``step_mode``, ``surrogate_function``,
        ``check_finite``) are passed to the constructor.
        """
        args, meta = cls.arguments_from_files(stem)
        approx = NeuronArrayApproximator(**args, **kwargs)
        approx.metadata = meta
        return approx

    def save(self, directory, name: str | None = None, metadata: dict | None = None):
        """Write ``<name>.safetensors`` and ``<name>.json`` to ``directory`` atomically."""
        from .storage import save_approximator

        meta = dict(getattr(self, "metadata", {}) or {})
        meta.update(metadata or {})
        meta.setdefault("target", self.name)
        return save_approximator(self, directory, name or self.name, meta)
